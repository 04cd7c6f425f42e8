"""Output folders through the command line (issue 31): ``--overwrite`` never removes an input, a
folder of another command, or a file the run did not write; one run at a time; ``pick --resume``.
Each data-loss case of the probe is reproduced and every input and user file checked byte for byte.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import SimData, error_line

from cryounet.io.coordinates import INDEX_NAME, read_star_index
from cryounet.io.outputs import MARKER_NAME, read_marker


def _pick(run_cli, model: Path, mics, out: Path, *extra: object):
    mics = mics if isinstance(mics, (list, tuple)) else [mics]
    return run_cli("pick", "--model", model, "--micrographs", *mics, "--output", out, "--device", "cpu",
                   "--quiet", "--no-tta", *extra)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (bookkeeping included) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def simulated(run_cli, tmp_path: Path) -> Path:
    """A data set written by ``cryounet simulate`` (a folder with its marker)."""
    data = tmp_path / "data"
    rc, _, err = run_cli("simulate", "--output", data, "--micrographs", "2", "--size", "128",
                         "--diameter", "16", "--particles", "4", "--quiet")
    assert rc == 0, err
    return data


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    """A copy of a trained model folder, marker included."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    assert read_marker(copy)["command"] == "train"
    return copy


def test_pick_into_its_own_input_folder_is_refused(run_cli, model: Path, simulated: Path) -> None:
    before = _snapshot(simulated)
    rc, _, err = _pick(run_cli, model, simulated, simulated, "--overwrite")
    line = error_line(err, "pick")
    assert rc == 2 and f"{simulated}: the output folder is an input of this run ({simulated})" in line
    assert _snapshot(simulated) == before
    unmarked = simulated.parent / "unmarked"
    shutil.copytree(simulated, unmarked, ignore=shutil.ignore_patterns(".cryounet-output.*"))
    before = _snapshot(unmarked)
    rc, _, err = _pick(run_cli, model, unmarked / "mic_000.mrc", unmarked, "--overwrite")
    assert rc == 2 and "the output folder holds an input of this run" in error_line(err, "pick")
    assert _snapshot(unmarked) == before


def test_train_into_its_training_data_is_refused(run_cli, simulated: Path, tiny_config_file: Path) -> None:
    for data in (simulated, simulated.parent / "copy"):
        if data != simulated:  # the same without simulate's marker
            shutil.copytree(simulated, data, ignore=shutil.ignore_patterns(".cryounet-output.*"))
        before = _snapshot(data)
        rc, _, err = run_cli("train", "--micrographs", data, "--coordinates", data, "--diameter", "16",
                             "--output", data, "--config", tiny_config_file, "--device", "cpu", "--quiet",
                             "--overwrite")
        assert rc == 2 and "the output folder is an input of this run" in error_line(err, "train")
        assert _snapshot(data) == before


def test_no_command_writes_into_a_trained_model(run_cli, model: Path, tiny_model: Path, simulated: Path,
                                                tmp_path: Path) -> None:
    picks = tmp_path / "picks"
    assert _pick(run_cli, model, simulated / "mic_000.mrc", picks)[0] == 0
    before = _snapshot(model)
    commands = {
        "pick": ["pick", "--model", tiny_model, "--micrographs", simulated / "mic_000.mrc", "--device", "cpu",
                 "--no-tta"],  # --output model/ a typo for picks/
        "postprocess": ["postprocess", "--picks", picks, "--diameter", "16"],
        "merge": ["merge", "--picks", picks],
        "simulate": ["simulate", "--micrographs", "1", "--size", "64"],
    }
    for command, argv in commands.items():
        rc, _, err = run_cli(*argv, "--output", model, "--overwrite", "--quiet")
        line = error_line(err, command)
        assert rc == 2, command
        assert f"this is a model folder of cryounet train; cryounet {command} does not write into it" in line
        assert "choose another --output folder" in line
        assert _snapshot(model) == before, command


def test_a_re_pick_keeps_the_users_files(run_cli, model: Path, simulated: Path, tmp_path: Path) -> None:
    picks = tmp_path / "picks"
    mics = [simulated / "mic_000.mrc", simulated / "mic_001.mrc"]
    assert _pick(run_cli, model, mics, picks)[0] == 0
    (picks / "notes.txt").write_text("my notes")
    (picks / "Extract" / "job007").mkdir(parents=True)
    (picks / "Extract" / "job007" / "particles.star").write_text("RELION's")
    (picks / "particles.star").write_text("RELION's too")
    rc, _, err = _pick(run_cli, model, mics[:1], picks, "--overwrite")
    assert rc == 0, err
    assert (picks / "notes.txt").read_text() == "my notes"
    assert (picks / "Extract" / "job007" / "particles.star").read_text() == "RELION's"
    assert (picks / "particles.star").read_text() == "RELION's too"
    assert not (picks / "mic_001.star").exists()  # the earlier run's file, not this run's
    assert list(read_star_index(picks / INDEX_NAME)) == ["mic_000"]


def test_overwrite_in_an_unmarked_folder_keeps_other_star_files(run_cli, model: Path, simulated: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "relion"
    out.mkdir()
    (out / "particles.star").write_text("RELION's")
    (out / "mic_000.star").write_text("stale picks of the micrograph picked now")
    rc, _, err = _pick(run_cli, model, simulated / "mic_000.mrc", out, "--overwrite")
    assert rc == 0, err
    assert (out / "particles.star").read_text() == "RELION's"
    assert "stale" not in (out / "mic_000.star").read_text()


def _hold(folder: Path, command: str) -> subprocess.Popen:
    """Another process that claims ``folder`` and holds it until killed."""
    code = ("import sys, time; from cryounet.io.outputs import claim_output_folder; "
            f"claim_output_folder(sys.argv[1], {command!r}); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_a_busy_folder_is_refused(run_cli, model: Path, simulated: Path, tmp_path: Path,
                                                    tiny_config_file: Path) -> None:
    picks = tmp_path / "picks"
    holder = _hold(picks, "pick")
    try:
        (picks / "mic_000.star").write_text("being written")
        for flags in ([], ["--overwrite"]):
            rc, _, err = _pick(run_cli, model, simulated / "mic_000.mrc", picks, *flags)
            assert rc == 2
            assert error_line(err, "pick") == (f"{picks}: output folder is in use by cryounet pick, pid "
                                               f"{holder.pid} on {socket.gethostname()}; wait for it to "
                                               "finish, or choose another folder")
            assert (picks / "mic_000.star").read_text() == "being written"
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = _pick(run_cli, model, simulated / "mic_000.mrc", picks)
    assert rc == 2 and f"an earlier run, pid {holder.pid} on {socket.gethostname()}, was interrupted" \
        in error_line(err, "pick")
    assert _pick(run_cli, model, simulated / "mic_000.mrc", picks, "--overwrite")[0] == 0

    trained = tmp_path / "trained"
    holder = _hold(trained, "train")
    try:
        rc, _, err = run_cli("train", "--micrographs", simulated, "--coordinates", simulated, "--diameter", "16",
                             "--output", trained, "--config", tiny_config_file, "--device", "cpu", "--quiet")
        assert rc == 2 and f"in use by cryounet train, pid {holder.pid}" in error_line(err, "train")
    finally:
        holder.kill()
        holder.wait()


def test_pick_resume_continues_an_interrupted_pick(run_cli, model: Path, simulated: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.inference import batch

    mics = [simulated / "mic_000.mrc", simulated / "mic_001.mrc"]
    picks = tmp_path / "picks"
    real_read = batch.read_micrograph

    def interrupted_at_the_second(path, *args, **kwargs):
        if Path(path).name == "mic_001.mrc":
            raise KeyboardInterrupt
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(batch, "read_micrograph", interrupted_at_the_second)
    rc, _, _ = _pick(run_cli, model, mics, picks, "--workers", "0")
    monkeypatch.undo()
    assert rc == 130 and (picks / "mic_000.star").is_file() and not (picks / INDEX_NAME).exists()
    first = (picks / "mic_000.star").stat().st_mtime_ns
    rc, _, err = _pick(run_cli, model, mics, picks)
    assert rc == 2 and "--overwrite to replace them or --resume to continue it" in error_line(err, "pick")
    time.sleep(0.01)
    rc, _, err = _pick(run_cli, model, mics, picks, "--resume")
    assert rc == 0, err
    assert (picks / "mic_000.star").stat().st_mtime_ns == first  # kept, not picked again
    assert list(read_star_index(picks / INDEX_NAME)) == ["mic_000", "mic_001"]
    assert read_marker(picks)["complete"] is True
    assert {"mic_000.star", "mic_001.star", INDEX_NAME} <= set(read_marker(picks)["files"])
    rc, _, err = _pick(run_cli, model, mics, picks, "--resume")
    assert rc == 2 and "already finished: nothing to resume" in error_line(err, "pick")


def test_train_resume_of_a_finished_training_is_refused(run_cli, model: Path, sim_data: SimData,
                                                        tiny_config_file: Path) -> None:
    before = _snapshot(model)
    rc, _, err = run_cli("train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
                         "--diameter", sim_data.diameter, "--output", model, "--config", tiny_config_file,
                         "--device", "cpu", "--quiet", "--resume")
    assert rc == 2 and "already finished: nothing to resume" in error_line(err, "train")
    assert _snapshot(model) == before
    assert MARKER_NAME in before
