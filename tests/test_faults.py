"""Fault suite: processes killed (SIGKILL) at random points and full disks.

After a kill, no partial output is accepted (a model or pick folder whose run did not finish is
refused by name) and resuming or re-running gives the same result as an uninterrupted run. A full
disk during any kind of write is one clear error line and leaves the files written before intact.
"""
from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import REPO, SimData, error_line, train_interrupted_after_one_epoch

from cryounet.io.outputs import MARKER_NAME, is_incomplete

ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _start(*argv: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cryounet", *map(str, argv)], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(*argv: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryounet", *map(str, argv)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_during(proc: subprocess.Popen, folder: Path, extra: float) -> bool:
    """SIGKILL ``proc`` ``extra`` seconds after it claimed its output ``folder`` (its run has
    begun), unless it ended first; True when it was killed."""
    deadline = time.monotonic() + 240
    while not (folder / MARKER_NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        proc.wait(timeout=extra)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _train_argv(sim: SimData, out: Path, config: Path) -> list[object]:
    return ["train", "--micrographs", sim.folder, "--coordinates", sim.folder, "--diameter", sim.diameter,
            "--output", out, "--config", config, "--device", "cpu", "--quiet", "--seed", "3"]


@pytest.fixture(scope="module")
def fault_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import json

    path = tmp_path_factory.mktemp("faults") / "config.json"
    path.write_text(json.dumps({"train": {"epochs": 4, "steps_per_epoch": 3, "batch_size": 4, "patch_size": 64,
                                          "num_threads": 1, "patience": 0},
                                "model": {"base_channels": 4, "depth": 2}, "pick": {"tta": False}}))
    return path


@pytest.fixture(scope="module")
def reference_training(tmp_path_factory: pytest.TempPathFactory, sim_data: SimData,
                       fault_config: Path) -> tuple[Path, float]:
    """The uninterrupted training run: its model folder, and the seconds it ran after claiming
    that folder (where a kill can land)."""
    out = tmp_path_factory.mktemp("faults") / "reference"
    proc = _start(*_train_argv(sim_data, out, fault_config))
    while not (out / MARKER_NAME).exists() and proc.poll() is None:
        time.sleep(0.02)
    claimed = time.monotonic()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return out, time.monotonic() - claimed


@pytest.fixture(scope="module")
def uninterrupted(reference_training: tuple[Path, float]) -> Path:
    return reference_training[0]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_training_killed_at_a_random_point_resumes_to_the_same_weights(
        tmp_path: Path, sim_data: SimData, fault_config: Path, reference_training: tuple[Path, float],
        seed: int) -> None:
    uninterrupted, seconds = reference_training
    # A random point of the run, as a share of the uninterrupted run's time after it claimed its
    # folder (so that the kill lands on a slow machine and a fast one alike); a run that still
    # ends first is started again with half the delay.
    delay = float(np.random.default_rng(seed).uniform(0.0, 0.9)) * seconds
    for attempt in range(4):
        out = tmp_path / f"model{attempt}"
        if _kill_during(_start(*_train_argv(sim_data, out, fault_config)), out, delay):
            break
        delay /= 2
    else:
        pytest.fail(f"four runs ended before the kill (last delay {delay * 2:.2f} s of {seconds:.2f} s)")
    if (out / "model.safetensors").exists():
        picked = _run("pick", "--model", out, "--micrographs", sim_data.micrographs[0], "--output",
                      tmp_path / "picks", "--device", "cpu", "--quiet")
        if is_incomplete(out):
            # weights of an earlier epoch exist, but the folder is refused as unfinished
            assert picked.returncode == 2
            assert "training run that did not finish" in error_line(picked.stderr, "pick")
        else:  # the kill landed after the run's last write (its completion mark): a usable model
            assert picked.returncode == 0, picked.stderr
    again = "--resume" if (out / "checkpoint.pt").exists() else "--overwrite"
    proc = _run(*_train_argv(sim_data, out, fault_config), again)
    assert proc.returncode == 0, proc.stderr
    assert not list(out.glob(".*.tmp"))
    assert _digest(out / "model.safetensors") == _digest(uninterrupted / "model.safetensors")
    assert _digest(out / "history.json") != "" and (out / "config.json").is_file()


@pytest.mark.slow
def test_pick_killed_at_a_random_point_is_refused_then_rerun_identically(
        tmp_path: Path, sim_data: SimData, uninterrupted: Path) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(24):  # enough micrographs for the kill to land in the middle
        (mics / f"m{i:02d}.mrc").symlink_to(sim_data.micrographs[i % len(sim_data.micrographs)])
    argv = ["pick", "--model", uninterrupted, "--micrographs", mics, "--device", "cpu", "--quiet", "--no-tta"]
    reference = _run(*argv, "--output", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "picks"
    proc = _start(*argv, "--output", out)
    killed = _kill_during(proc, out, float(np.random.default_rng(7).uniform(0.0, 0.5)))
    if killed and is_incomplete(out):  # (a kill after the run's completion mark interrupts nothing)
        post = _run("postprocess", "--picks", out, "--output", tmp_path / "post", "--diameter", 24)
        assert post.returncode == 2 and "did not finish" in error_line(post.stderr, "postprocess")
        refused = _run(*argv, "--output", out)
        assert refused.returncode == 2 and "--overwrite" in error_line(refused.stderr, "pick")
    rerun = _run(*argv, "--output", out, "--overwrite")
    assert rerun.returncode == 0, rerun.stderr
    expected = sorted(p.name for p in (tmp_path / "reference").glob("*.star"))
    assert sorted(p.name for p in out.glob("*.star")) == expected
    for name in expected:
        if name != "coordinates.star":  # the index names the folder it is in
            assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes()


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 KiB tmpfs (the tests run as root in CI; elsewhere the mount is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_pick_is_one_line(tiny_disk: Path, sim_data: SimData, uninterrupted: Path) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (250 * 1024))  # leave a few KiB: the marker fits, the picks do not
    proc = _run("pick", "--model", uninterrupted, "--micrographs", *sim_data.micrographs, "--output",
                tiny_disk / "picks", "--device", "cpu", "--quiet", "--no-tta", "--threshold", "0.0")
    assert proc.returncode == 2, proc.stderr
    assert "no space left on the device" in error_line(proc.stderr, "pick")
    assert "Traceback" not in proc.stderr
    assert not list((tiny_disk / "picks").glob(".*.tmp"))  # no half-written file under any name


@pytest.mark.parametrize("what", ["checkpoint", "weights", "json"])
def test_a_failing_write_leaves_the_previous_file_intact(tmp_path: Path, sim_data: SimData,
                                                         tiny_config_file: Path, run_cli,
                                                         monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    """The fake-writer version, for each kind of write of a training run (a second run resumes)."""
    model = tmp_path / "model"
    argv = ["train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder, "--diameter",
            sim_data.diameter, "--output", model, "--config", tiny_config_file, "--device", "cpu", "--quiet"]
    # one epoch done: checkpoint, weights and JSON files exist
    assert train_interrupted_after_one_epoch(run_cli, monkeypatch, argv) == 130
    target = {"checkpoint": "checkpoint.pt", "weights": "model.safetensors", "json": "history.json"}[what]
    before = _digest(model / target)
    real_replace = os.replace

    def full(src, dst):
        if Path(dst).name == target:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    rc, _, err = run_cli(*argv, "--resume")
    monkeypatch.undo()
    assert rc == 2 and "no space left on the device" in error_line(err, "train")
    assert _digest(model / target) == before
    assert not list(model.glob(".*.tmp"))


def _signal_when(proc: subprocess.Popen, ready: Path, signum: int) -> subprocess.CompletedProcess:
    """Send ``signum`` to ``proc`` once ``ready`` exists (its run is under way); its output."""
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the signal could be sent"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)  # ends within seconds: no hang
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_training_says_so_and_resumes(tmp_path: Path, sim_data: SimData, signum: int) -> None:
    import json

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train": {"epochs": 40, "steps_per_epoch": 3, "batch_size": 4, "patch_size": 64,
                                            "num_threads": 1, "patience": 0},
                                  "model": {"base_channels": 4, "depth": 2}, "pick": {"tta": False}}))
    out = tmp_path / "model"
    argv = _train_argv(sim_data, out, config)
    done = _signal_when(_start(*argv), out / "checkpoint.pt", signum)
    name = signal.Signals(signum).name
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"cryounet train: interrupted by {name}"
    assert "Traceback" not in done.stderr
    assert is_incomplete(out) and (out / "checkpoint.pt").is_file()
    assert not list(out.glob(".*.tmp"))
    resumed = _run(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not is_incomplete(out)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_pick_says_so_and_stays_unfinished(tmp_path: Path, sim_data: SimData, uninterrupted: Path,
                                                        signum: int) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(200):  # more than the signal needs to land in the middle
        (mics / f"m{i:03d}.mrc").symlink_to(sim_data.micrographs[i % len(sim_data.micrographs)])
    out = tmp_path / "picks"
    proc = _start("pick", "--model", uninterrupted, "--micrographs", mics, "--device", "cpu", "--output", out)
    done = _signal_when(proc, out / "m000.star", signum)
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"cryounet pick: interrupted by {signal.Signals(signum).name}"
    assert "Traceback" not in done.stderr
    assert is_incomplete(out) and not list(out.glob(".*.tmp"))
