"""Data-parallel training (``cryounet train --devices``): the helpers of
:mod:`cryounet.training.distributed`, and real torchrun runs of 2 gloo processes on the CPU against
one process.

Stated tolerance of "2 processes match 1 process" (the same data, initial weights, optimiser and
schedule; each process normalises its loss and BatchNorm over its own half of the batch): each
epoch's mean training loss within 2 % of one process's, the same validation best F1 within 0.05,
and final weights at most a quarter as far from one process's as another seed's are.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cryounet.errors import CryoUNetError
from cryounet.io.model_folder import CHECKPOINT_NAME, HISTORY_NAME, WEIGHTS_NAME
from cryounet.io.outputs import MARKER_NAME
from cryounet.training import distributed
from cryounet.training.distributed import Distributed

pytestmark = pytest.mark.slow

#: Short runs of a tiny network; patience 0 so that both runs train every epoch.
CONFIG = {"train": {"epochs": 3, "steps_per_epoch": 6, "batch_size": 4, "patch_size": 64, "patience": 0},
          "model": {"base_channels": 4, "depth": 2}}


# ---------------------------------------------------------------- helpers of the module
@pytest.mark.parametrize("spec, expected", [
    ("0,1", ["0", "1"]), ("0 1", ["0", "1"]), (" 2 ", ["2"]), ("cuda:0,cuda:3", ["0", "3"]),
    ("cpu,cpu", ["cpu", "cpu"]), ("CPU", ["cpu"]),
])
def test_parse_devices(spec: str, expected: list[str]) -> None:
    assert distributed.parse_devices(spec) == expected


@pytest.mark.parametrize("spec, words", [
    ("", "empty"), (" , ", "empty"), ("0,gpu", "neither a GPU index nor cpu"),
    ("0,cpu", "mixes the CPU and GPUs"), ("1,1", "names a GPU twice"), ("-1", "neither"),
])
def test_parse_devices_refuses(spec: str, words: str) -> None:
    with pytest.raises(CryoUNetError, match=words):
        distributed.parse_devices(spec)


def test_shard_gives_each_rank_its_contiguous_share() -> None:
    batch = list(range(8))
    shares = [Distributed(rank, 4, rank).shard(batch) for rank in range(4)]
    assert shares == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert Distributed().shard(batch) == batch


def test_single_process_helpers_are_identities() -> None:
    world = Distributed()
    net = torch.nn.Linear(2, 2)
    assert world.wrap(net, torch.device("cpu")) is net
    assert world.mean(1.5, torch.device("cpu")) == 1.5
    assert world.decision(True, torch.device("cpu")) is True
    assert world.number(7, torch.device("cpu")) == 7
    assert not world.enabled and world.is_main


def test_process_device_by_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    assert distributed.process_device(["2", "5"], "auto", 1) == "5"
    assert distributed.process_device(None, "cpu", 3) == "cpu"
    assert distributed.process_device(None, "cuda", 3) == "3"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.process_device(None, "auto", 1) == "cpu"
    with pytest.raises(CryoUNetError, match="local rank 2 has no device"):
        distributed.process_device(["0", "1"], "auto", 2)


def test_gpus_asked_for_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CryoUNetError, match="asks for GPUs but no CUDA GPU"):
        distributed.check_devices(["0", "1"])
    distributed.check_devices(["cpu", "cpu"])


def test_launch_command_is_torchrun_standalone() -> None:
    command = distributed.launch_command(["train", "--output", "m"], 2)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in command and "--nproc-per-node=2" in command
    assert command[-4:] == ["cryounet", "train", "--output", "m"]


def test_process_threads_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet import limits

    monkeypatch.setattr(limits, "usable_cpus", lambda: 16)
    assert distributed.process_threads(0, 4) == 4
    assert distributed.process_threads(3, 4) == 3
    monkeypatch.setattr(limits, "usable_cpus", lambda: 2)
    assert distributed.process_threads(0, 4) == 1


# ---------------------------------------------------------------- real runs through torchrun
def _train_argv(sim_data, config: Path, output: Path, *extra: str) -> list[str]:
    mics = [str(m) for m in sim_data.micrographs]
    return [sys.executable, "-m", "cryounet", "train", "--micrographs", *mics[:-1], "--coordinates",
            str(sim_data.folder), "--valid-micrographs", mics[-1], "--valid-coordinates", str(sim_data.folder),
            "--diameter", str(sim_data.diameter), "--config", str(config), "--output", str(output),
            "--threads", "1", *extra]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def _history(folder: Path) -> list[dict]:
    return json.loads((folder / HISTORY_NAME).read_text())


def _weights(folder: Path) -> torch.Tensor:
    state = load_file(str(folder / WEIGHTS_NAME))
    return torch.cat([t.flatten().double() for name, t in sorted(state.items()) if t.is_floating_point()])


@pytest.fixture(scope="module")
def runs(sim_data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One process (seeds 0 and 1) and two gloo processes (seed 0), trained once for the module."""
    root = tmp_path_factory.mktemp("ddp")
    config = root / "config.json"
    config.write_text(json.dumps(CONFIG))
    out = {}
    for name, extra in {"one": ["--device", "cpu"], "one_seed1": ["--device", "cpu", "--seed", "1"],
                        "two": ["--devices", "cpu,cpu"]}.items():
        proc = _run(_train_argv(sim_data, config, root / name, *extra))
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = root / name
        (root / f"{name}.log").write_text(proc.stderr)
    out["config"] = config
    return out


def test_two_processes_really_ran(runs: dict[str, Path]) -> None:
    log = (runs["two"].parent / "two.log").read_text()
    assert "process 1 of 2" in log and "process 2 of 2" in log and "gloo backend" in log
    assert "2 of the 4 patches of each step per process" in log


def test_two_processes_match_one_within_the_stated_tolerance(runs: dict[str, Path]) -> None:
    one, two = _history(runs["one"]), _history(runs["two"])
    assert [r["epoch"] for r in two] == [1, 2, 3]  # rank 0 alone wrote the history: no doubled epochs
    for a, b in zip(one, two):
        assert abs(a["train_loss"] - b["train_loss"]) <= 0.02 * a["train_loss"], (a, b)
        assert abs(a["valid_best_f1"] - b["valid_best_f1"]) <= 0.05, (a, b)
        assert a["learning_rate"] == pytest.approx(b["learning_rate"])
    w_one, w_two, w_seed = _weights(runs["one"]), _weights(runs["two"]), _weights(runs["one_seed1"])
    assert (w_one - w_two).norm() <= 0.25 * (w_one - w_seed).norm()


def test_only_rank_zero_wrote_a_complete_model_folder(runs: dict[str, Path]) -> None:
    folder = runs["two"]
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if ".tmp" in n or n.startswith(".tmp")], names
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["command"] == "train" and marker["complete"] is True
    assert {"model.safetensors", "config.json", "checkpoint.pt"} <= set(marker["files"])
    assert ".cryounet-output.lock" not in names  # the launcher held the lock, and removed it at the end
    state = torch.load(folder / CHECKPOINT_NAME, weights_only=True)
    assert state["world_size"] == 2


def test_batch_that_cannot_be_shared_out_is_refused_before_anything_starts(
        sim_data, runs: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "odd.json"
    config.write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "batch_size": 3}}))
    proc = _run(_train_argv(sim_data, config, tmp_path / "m", "--devices", "cpu,cpu"))
    assert proc.returncode == 2
    assert "train.batch_size 3 cannot be shared out equally by 2 devices" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_killed_run_resumes_with_the_same_world_size_and_ends_as_uninterrupted(
        sim_data, runs: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL the whole process tree after the first checkpoint, resume with --resume: the result
    equals the uninterrupted run's; resuming with another number of processes is refused."""
    longer = tmp_path / "longer.json"
    longer.write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "epochs": 4, "steps_per_epoch": 30}}))
    reference = tmp_path / "reference"
    assert _run(_train_argv(sim_data, longer, reference, "--devices", "cpu,cpu")).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_argv(sim_data, longer, killed, "--devices", "cpu,cpu"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (killed / CHECKPOINT_NAME).is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    marker = json.loads((killed / MARKER_NAME).read_text())
    if marker["complete"]:
        pytest.fail("the run ended before it could be killed: make its epochs longer")
    epochs_done = len(_history(killed))
    assert epochs_done < 4

    other = _run(_train_argv(sim_data, longer, killed, "--resume", "--device", "cpu"))
    assert other.returncode == 2
    assert "written by a run of 2 training process(es), resumed with 1" in other.stderr

    resumed = _run(_train_argv(sim_data, longer, killed, "--resume", "--devices", "cpu,cpu"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((killed / MARKER_NAME).read_text())["complete"] is True
    assert [r["epoch"] for r in _history(killed)] == [1, 2, 3, 4]
    assert torch.equal(_weights(killed), _weights(reference))


def test_fold_models_of_two_processes_train_rank_zeros_epoch_count(sim_data, tmp_path: Path) -> None:
    """With train.fold_epochs = "main", only rank 0 knows which epoch the main model kept: every
    process must train the fold models for that many epochs (a rank that did not would hang or fail)."""
    config = tmp_path / "folds.json"
    config.write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "calibration_folds": 2,
                                                      "fold_epochs": "main"}}))
    out = tmp_path / "m"
    proc = _run(_train_argv(sim_data, config, out, "--devices", "cpu,cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = json.loads((out / "main_epochs.json").read_text())["main_best_epoch"]
    assert 1 <= epochs <= 3
    assert [r["epoch"] for r in _history(out / "fold_1")] == list(range(1, epochs + 1))
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["command"] == "train" and marker["complete"] is True
    assert "fold_1/model.safetensors" in marker["files"]  # the fold models are the run's too


def test_a_terminated_launcher_ends_its_processes_and_keeps_the_checkpoint(sim_data, tmp_path: Path) -> None:
    """SIGTERM to the launching cryounet (as a queue's time limit sends it): torchrun and the
    training processes end too, the run says so (exit 143) and its checkpoint is kept."""
    longer = tmp_path / "longer.json"
    longer.write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "epochs": 40, "steps_per_epoch": 30}}))
    out = tmp_path / "terminated"
    proc = subprocess.Popen(_train_argv(sim_data, longer, out, "--devices", "cpu,cpu"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (out / CHECKPOINT_NAME).is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # the launcher alone, not its process group
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "cryounet train: interrupted by SIGTERM"
    for _ in range(100):  # no training process is left running
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("training processes outlived their launcher")
    assert (out / CHECKPOINT_NAME).is_file() and not json.loads((out / MARKER_NAME).read_text())["complete"]
