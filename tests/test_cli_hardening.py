"""Hardening of the command line (issue 11): nothing the user made is lost, every expected failure is
one clear line (exit 2), nothing wrong is accepted in silence. Each test is one finding of the
230-case audit; ``docs/RELIABILITY.md`` lists them.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_helpers import SimData, error_line, train_interrupted_after_one_epoch

from cryounet.io.coordinates import read_coordinates, write_star_picks, Picks
from cryounet.io.outputs import MARKER_NAME


def _pick(run_cli, model: Path, mics, out: Path, *extra: object):
    mics = mics if isinstance(mics, (list, tuple)) else [mics]
    return run_cli("pick", "--model", model, "--micrographs", *mics, "--output", out, "--device", "cpu",
                   "--quiet", "--no-tta", *extra)


def _mics(sim: SimData, folder: Path, indices=(0, 1)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        shutil.copy(sim.micrographs[i], folder / sim.micrographs[i].name)
    return folder


def _train_argv(sim: SimData, out: Path, config: Path, *extra: object) -> list[object]:
    return ["train", "--micrographs", sim.folder, "--coordinates", sim.folder, "--diameter", sim.diameter,
            "--output", out, "--config", config, "--device", "cpu", "--quiet", *extra]


# ======================================================================== data loss (findings 1-3)
def test_pick_refuses_a_folder_with_the_users_own_picks(run_cli, tiny_model: Path, sim_data: SimData,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "manual"
    out.mkdir()
    mine = out / f"{sim_data.micrographs[0].stem}.star"
    write_star_picks(mine, Picks([(10, 10), (20, 20)]))
    before = mine.read_bytes()
    rc, _, err = _pick(run_cli, tiny_model, sim_data.micrographs[0], out)
    assert rc == 2 and "already holds files" in error_line(err, "pick") and "--overwrite" in err
    assert mine.read_bytes() == before
    rc, _, _ = _pick(run_cli, tiny_model, sim_data.micrographs[0], out, "--overwrite")
    assert rc == 0 and mine.read_bytes() != before


def test_postprocess_refuses_a_folder_with_the_users_files(run_cli, tiny_model: Path, sim_data: SimData,
                                                           tmp_path: Path) -> None:
    picks = tmp_path / "picks"
    assert _pick(run_cli, tiny_model, sim_data.micrographs[0], picks)[0] == 0
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.star").write_text("mine")
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", out, "--diameter", sim_data.diameter,
                         "--quiet")
    assert rc == 2 and "already holds files (keep.star)" in error_line(err, "postprocess")
    assert (out / "keep.star").read_text() == "mine"


def test_train_refuses_an_existing_model(run_cli, tiny_model: Path, sim_data: SimData,
                                         tiny_config_file: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights = (model / "model.safetensors").read_bytes()
    rc, _, err = run_cli(*_train_argv(sim_data, model, tiny_config_file))
    assert rc == 2 and "give --overwrite" in error_line(err, "train")
    assert (model / "model.safetensors").read_bytes() == weights
    rc, _, err = run_cli(*_train_argv(sim_data, model, tiny_config_file, "--overwrite", "--resume"))
    assert rc == 2 and "give one" in error_line(err, "train")


def test_an_interrupted_training_is_refused_by_pick_then_resumed(run_cli, sim_data: SimData,
                                                                 tiny_config_file: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model"
    rc = train_interrupted_after_one_epoch(run_cli, monkeypatch, _train_argv(sim_data, model, tiny_config_file))
    assert rc == 130 and (model / "model.safetensors").is_file()  # weights of epoch 1 exist...
    rc, _, err = _pick(run_cli, model, sim_data.micrographs[0], tmp_path / "picks")
    assert rc == 2 and "training run that did not finish" in error_line(err, "pick")  # ...but are refused
    rc, _, err = run_cli(*_train_argv(sim_data, model, tiny_config_file))
    assert rc == 2 and "--resume to continue it" in error_line(err, "train")
    rc, _, _ = run_cli(*_train_argv(sim_data, model, tiny_config_file, "--resume"))
    assert rc == 0
    assert _pick(run_cli, model, sim_data.micrographs[0], tmp_path / "picks")[0] == 0


def test_rerun_with_overwrite_leaves_nothing_stale(run_cli, tiny_model: Path, sim_data: SimData,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "picks"
    mics = _mics(sim_data, tmp_path / "mics", (0, 1))
    assert _pick(run_cli, tiny_model, mics, out)[0] == 0
    stale = out / f"{sim_data.micrographs[1].stem}.star"
    assert stale.is_file()
    (mics / sim_data.micrographs[1].name).write_bytes(b"broken" * 400)  # now skipped
    rc, _, _ = _pick(run_cli, tiny_model, mics, out, "--overwrite")
    assert rc == 0 and not stale.exists()
    skipped = json.loads((out / "skipped.json").read_text())
    assert [Path(s["micrograph"]).name for s in skipped] == [sim_data.micrographs[1].name]


def test_a_micrograph_named_like_the_index_is_refused(run_cli, tiny_model: Path, sim_data: SimData,
                                                      tmp_path: Path) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    shutil.copy(sim_data.micrographs[0], mics / "coordinates.mrc")
    rc, _, err = _pick(run_cli, tiny_model, mics, tmp_path / "picks")
    assert rc == 2 and "coordinates.mrc: its picks would be written as coordinates.star" in error_line(err, "pick")


def test_simulate_refuses_an_existing_dataset(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    argv = ["simulate", "--output", out, "--micrographs", "2", "--size", "64", "--diameter", "12", "--quiet"]
    assert run_cli(*argv)[0] == 0
    rc, _, err = run_cli(*argv[:4], "1", *argv[5:])
    assert rc == 2 and "earlier cryounet simulate run" in error_line(err, "simulate")
    assert run_cli(*argv[:4], "1", *argv[5:], "--overwrite")[0] == 0
    assert sorted(p.name for p in out.glob("mic_*.mrc")) == ["mic_000.mrc"]  # not mixed with the old


# ======================================================================== tracebacks (findings 4-5)
def _corrupt_header(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[0:8] = struct.pack("<2i", -256, -1)
    target.write_bytes(bytes(data))
    return target


def test_one_corrupt_header_does_not_stop_a_pick_batch(run_cli, tiny_model: Path, sim_data: SimData,
                                                       tmp_path: Path) -> None:
    mics = _mics(sim_data, tmp_path / "mics", (0, 2))
    _corrupt_header(sim_data.micrographs[1], mics / sim_data.micrographs[1].name)
    out = tmp_path / "picks"
    rc, _, err = _pick(run_cli, tiny_model, mics, out)
    assert rc == 0, err
    assert {p.stem for p in out.glob("mic_*.star")} == {sim_data.micrographs[i].stem for i in (0, 2)}
    assert (out / "coordinates.star").is_file()
    skipped = json.loads((out / "skipped.json").read_text())
    assert "no valid MRC header" in skipped[0]["reason"]


def test_train_skips_a_corrupt_header(run_cli, sim_data: SimData, tiny_config_file: Path,
                                      tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(sim_data.folder, data)
    _corrupt_header(sim_data.micrographs[1], data / sim_data.micrographs[1].name)
    rc, _, err = run_cli("train", "--micrographs", data, "--coordinates", data, "--diameter", sim_data.diameter,
                         "--output", tmp_path / "m", "--config", tiny_config_file, "--device", "cpu")
    assert rc == 0 and "skipping" in err and "no valid MRC header" in err


@pytest.mark.parametrize("kind", ["folder", "binary", "latin1"])
def test_config_that_is_a_folder_or_not_text(run_cli, sim_data: SimData, tmp_path: Path, kind: str) -> None:
    config = tmp_path / "config.json"
    if kind == "folder":
        config.mkdir()
    else:
        config.write_bytes(b"\x00\x9f\xff\xfe" * 64 if kind == "binary" else '{"train": "é"}'.encode("latin-1"))
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", config))
    line = error_line(err, "train")
    assert rc == 2 and str(config) in line
    assert ("is a folder" in line) if kind == "folder" else ("not a text (UTF-8) file" in line)
    rc, _, err = run_cli("train", "--datasets", config, "--output", tmp_path / "m2", "--quiet")
    assert rc == 2 and str(config) in error_line(err, "train")


def test_json_output_to_an_unwritable_place(run_cli, tiny_model: Path, sim_data: SimData,
                                            tmp_path: Path) -> None:
    picks = tmp_path / "picks"
    assert _pick(run_cli, tiny_model, sim_data.micrographs[0], picks)[0] == 0
    target = tmp_path / "file"
    target.write_text("x")
    rc, _, err = run_cli("evaluate", "--picks", picks, "--truth", sim_data.folder, "--diameter",
                         sim_data.diameter, "--json", target / "scores.json")
    assert rc == 2 and "cannot create the folder" in error_line(err, "evaluate")
    rc, _, err = run_cli("evaluate", "--picks", picks, "--truth", sim_data.folder, "--diameter",
                         sim_data.diameter, "--json", target)
    assert rc == 2 and "file exists; give --overwrite" in error_line(err, "evaluate")
    assert target.read_text() == "x"


def test_output_path_is_a_file(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("mine")
    rc, _, err = _pick(run_cli, tiny_model, sim_data.micrographs[0], target)
    assert rc == 2 and "is an existing file, not a folder" in error_line(err, "pick")
    assert target.read_text() == "mine"


def test_disk_full_is_one_line_and_keeps_the_previous_files(run_cli, tiny_model: Path, sim_data: SimData,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "picks"
    assert _pick(run_cli, tiny_model, sim_data.micrographs[0], out)[0] == 0
    star = out / f"{sim_data.micrographs[0].stem}.star"
    before = star.read_bytes()
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith(".star"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    rc, _, err = _pick(run_cli, tiny_model, sim_data.micrographs[0], out, "--overwrite", "--threshold", "0.01")
    monkeypatch.undo()
    assert rc == 2 and "no space left on the device" in error_line(err, "pick")
    assert not list(out.glob(".*.tmp"))  # no half-written file left
    assert not star.exists() or star.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "foreign", "other-network"])
def test_resume_from_a_bad_checkpoint(run_cli, sim_data: SimData, tiny_config_file: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    model = tmp_path / "model"
    assert train_interrupted_after_one_epoch(run_cli, monkeypatch, _train_argv(sim_data, model,
                                                                               tiny_config_file)) == 130
    checkpoint = model / "checkpoint.pt"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    elif damage == "foreign":
        torch.save({"hello": torch.zeros(3)}, checkpoint)
    else:
        state = torch.load(checkpoint, weights_only=True)
        state["model"] = {k: torch.zeros(1) for k in state["model"]}
        torch.save(state, checkpoint)
    rc, _, err = run_cli(*_train_argv(sim_data, model, tiny_config_file, "--resume"))
    assert rc == 2 and "not a checkpoint of this training run" in error_line(err, "train")


def test_an_unexpected_exception_is_one_line_asking_for_a_report(run_cli, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.commands import evaluate

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(evaluate, "main", boom)
    argv = ["evaluate", "--picks", tmp_path, "--truth", tmp_path, "--diameter", "20"]
    rc, _, err = run_cli(*argv)
    assert rc == 1 and "Traceback" not in err
    assert "internal error: ZeroDivisionError: division by zero" in err and "please report it" in err
    rc, _, err = run_cli(*argv, "--verbose")
    assert rc == 1 and "Traceback" in err


@pytest.mark.parametrize("error", [MemoryError(), type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")])
def test_out_of_memory_is_one_line(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error) -> None:
    from cryounet.commands import evaluate

    def exhausted(args):
        raise error

    monkeypatch.setattr(evaluate, "main", exhausted)
    rc, _, err = run_cli("evaluate", "--picks", tmp_path, "--truth", tmp_path, "--diameter", "20")
    assert rc == 2 and "out of memory (use smaller tiles or batches" in error_line(err, "evaluate")


# ======================================================================== silent acceptance (6-9)
@pytest.mark.parametrize("value", ["nan", "inf", "0.01", "2", "-3", "1e9"])
@pytest.mark.parametrize("command", ["pick", "evaluate", "postprocess", "train"])
def test_diameter_range(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path, command: str,
                        value: str) -> None:
    argv = {"pick": ["pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                     "--output", tmp_path / "o"],
            "evaluate": ["evaluate", "--picks", sim_data.folder, "--truth", sim_data.folder],
            "postprocess": ["postprocess", "--picks", sim_data.folder, "--output", tmp_path / "o"],
            "train": ["train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
                      "--output", tmp_path / "o"]}[command]
    rc, _, err = run_cli(*argv, "--diameter", value)
    assert rc == 2 and "argument --diameter: " in error_line(err, command)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, words", [
    (["--threshold", "nan"], "--threshold must be between 0 and 1"),
    (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
    (["--batch-size", "-1"], "argument --batch-size"),
])
def test_pick_value_ranges(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path, argv, words) -> None:
    rc, _, err = _pick(run_cli, tiny_model, sim_data.micrographs[0], tmp_path / "o", *argv)
    assert rc == 2 and words in error_line(err, "pick")


@pytest.mark.parametrize("argv", [["--nms-distance", "nan"], ["--edge-distance", "-1"], ["--threshold", "nan"],
                                  ["--max-per-micrograph", "-2"]])
def test_postprocess_value_ranges(run_cli, sim_data: SimData, tmp_path: Path, argv) -> None:
    rc, _, err = run_cli("postprocess", "--picks", sim_data.folder, "--output", tmp_path / "o", "--diameter",
                         "24", *argv)
    assert rc == 2 and f"argument {argv[0]}" in error_line(err, "postprocess")


@pytest.mark.parametrize("config, words", [
    ({"train": {"learning_rate": 1e9}}, "above the largest value"),
    ({"model": {"depth": 40}}, "model.depth = 40 is above"),
    ({"model": {"base_channels": 128, "depth": 6}}, "million parameters"),
    ({"pick": {"threshold": 1.5}}, "pick.threshold must be between 0 and 1"),
    ({"pick": {"nms_radius": float("nan")}}, "must be a finite number"),
    ({"train": {"patch_size": 10**6}}, "train.patch_size"),
], ids=["learning-rate", "depth", "parameters", "threshold", "nms-nan", "patch"])
def test_config_values_are_bounded(run_cli, sim_data: SimData, tmp_path: Path, config: dict, words: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))  # json writes NaN, as Python's json reads it
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", path))
    assert rc == 2 and words in error_line(err, "train")
    assert not (tmp_path / "m").exists()  # refused before anything was built or written


def test_a_model_folder_config_is_bounded_before_anything_is_built(run_cli, tiny_model: Path,
                                                                   sim_data: SimData, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    data = json.loads((model / "config.json").read_text())
    data["config"]["model"]["depth"] = 40
    (model / "config.json").write_text(json.dumps(data))
    rc, _, err = _pick(run_cli, model, sim_data.micrographs[0], tmp_path / "o")
    assert rc == 2 and "model.depth = 40 is above" in error_line(err, "pick")


def test_nan_weights_are_refused(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from cryounet.io.model_folder import record_digests

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    state = load_file(str(model / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(model / "model.safetensors"))
    record_digests(model, ["model.safetensors"])  # as saved by a run that trained them (else: other bytes)
    rc, _, err = _pick(run_cli, model, sim_data.micrographs[0], tmp_path / "o")
    assert rc == 2 and "NaN or infinite values" in error_line(err, "pick")


@pytest.mark.parametrize("content", ["", "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"],
                         ids=["0-byte", "header-only"])
def test_training_warns_about_coordinate_files_without_particles(run_cli, sim_data: SimData,
                                                                 tiny_config_file: Path, tmp_path: Path,
                                                                 content: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(sim_data.folder, data)
    (data / f"{sim_data.micrographs[1].stem}.star").write_text(content)
    rc, _, err = run_cli("train", "--micrographs", data, "--coordinates", data, "--diameter", sim_data.diameter,
                         "--output", tmp_path / "m", "--config", tiny_config_file, "--device", "cpu")
    if content:
        assert rc == 0 and "coordinate file without any particle" in err
    else:
        assert rc == 2 and "empty file, not a STAR coordinate file" in error_line(err, "train")


def test_duplicated_ground_truth_does_not_halve_recall(run_cli, tiny_model: Path, sim_data: SimData,
                                                       tmp_path: Path) -> None:
    picks = tmp_path / "picks"
    assert _pick(run_cli, tiny_model, sim_data.micrographs[0], picks)[0] == 0
    star = f"{sim_data.micrographs[0].stem}.star"
    once, twice = tmp_path / "once", tmp_path / "twice"
    once.mkdir()
    twice.mkdir()
    shutil.copy(sim_data.folder / star, once / star)
    write_star_picks(twice / star, Picks(np.concatenate([read_coordinates(once / star).xy] * 2)))
    results = []
    for folder in (once, twice):
        rc, out, err = run_cli("evaluate", "--picks", picks, "--truth", folder, "--diameter", sim_data.diameter)
        assert rc == 0
        results.append(out.strip())
    assert results[0] == results[1]
    assert "duplicated coordinate(s) ignored" in err


def test_zero_validation_f1_is_warned(run_cli, sim_data: SimData, tiny_config_file: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.training import loop

    real = loop.validate

    def nothing_found(*args, **kwargs):
        result = real(*args, **kwargs)
        result.best_f1 = result.f1 = 0.0
        return result

    monkeypatch.setattr(loop, "validate", nothing_found)
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tiny_config_file)[:-1])
    assert rc == 0 and "found none of the" in err and "validation F1 0.000" in err


def test_the_marker_of_a_finished_run(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    out = tmp_path / "picks"
    assert _pick(run_cli, tiny_model, sim_data.micrographs[0], out)[0] == 0
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker == {"command": "pick", "complete": True, "host": marker["host"], "pid": os.getpid(),
                      "files": ["coordinates.star", "mic_000.star", "pick.json", "skipped.json"]}


# ======================================================================== limits of the process (issue 31)
def _fail_in_evaluate(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    from cryounet.commands import evaluate

    def failing(args):
        raise error

    monkeypatch.setattr(evaluate, "main", failing)


ORT_FAIL = type("RuntimeException", (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})


@pytest.mark.parametrize("error, words", [
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 640 vs 534"), "disk is full or a file-size limit"),
    (RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file data/0: file write failed"),
     "disk is full or a file-size limit"),
    (type("SafetensorError", (Exception,), {"__module__": "safetensors_rust"})(
        "Error while serializing: I/O error: No space left on device (os error 28)"), "disk is full"),
    (OSError(errno.EFBIG, "File too large", "/x/checkpoint.pt"), "/x/checkpoint.pt: file too large for this process's file-size limit"),
    (ORT_FAIL("Exception during initialization: BFCArena::AllocateRawInternal Failed to allocate memory for "
              "requested buffer of size 4194304"), "out of memory"),
    (OSError("/venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so: failed to map segment from shared object"),
     "cannot load /venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so"),
    (ImportError("libgomp.so.1: failed to map segment from shared object"), "cannot load libgomp.so.1"),
    (RuntimeError("can't start new thread"), "a thread could not be started"),
])
def test_limits_reported_by_libraries_are_one_line(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   error: BaseException, words: str) -> None:
    _fail_in_evaluate(monkeypatch, error)
    rc, _, err = run_cli("evaluate", "--picks", tmp_path, "--truth", tmp_path, "--diameter", "20")
    assert rc == 2 and words in error_line(err, "evaluate")


def test_a_file_size_limit_during_training_is_one_line(sim_data: SimData, tiny_config_file: Path,
                                                       tmp_path: Path) -> None:
    import subprocess
    import sys

    from engine_helpers import REPO

    argv = " ".join(map(str, _train_argv(sim_data, tmp_path / "model", tiny_config_file)))
    # 8 KiB: the small JSON files fit, the checkpoint does not (SIGXFSZ killed the process before)
    proc = subprocess.run(["bash", "-c", f"ulimit -f 8; exec {sys.executable} -m cryounet {argv}"], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "file-size limit" in error_line(proc.stderr, "train")
    assert not list((tmp_path / "model").glob(".*.tmp"))


@pytest.mark.parametrize("value", ["18446744073709551616", "-1", "4294967296"])
@pytest.mark.parametrize("command", ["train", "simulate"])
def test_oversized_seeds_are_refused(run_cli, tmp_path: Path, command: str, value: str) -> None:
    rc, _, err = run_cli(command, "--output", tmp_path / "out", f"--seed={value}")
    assert rc == 2 and "a whole number from 0 to 4294967295" in err and "Traceback" not in err


def test_long_and_non_utf8_micrograph_names(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    names = [b"caf\xe9.mrc",  # a Latin-1 name on a UTF-8 system
             b"b" * 247 + b".mrc",  # its STAR file fits in 255 bytes; the temporary name did not
             b"c" * 251 + b".mrc",  # its STAR file would not fit: skipped with the reason, not the batch
             b"ok.mrc"]
    for name in names:
        shutil.copy(sim_data.micrographs[0], os.fsdecode(os.fsencode(mics) + b"/" + name))
    out = tmp_path / "picks"
    rc, _, err = _pick(run_cli, tiny_model, mics, out)
    assert rc == 0, err
    made = sorted(os.fsencode(p.name) for p in out.glob("*.star"))
    assert made == sorted([b"caf\xe9.star", b"b" * 247 + b".star", b"ok.star", b"coordinates.star"])
    skipped = json.loads((out / "skipped.json").read_text())
    assert len(skipped) == 1 and "c" * 251 in skipped[0]["micrograph"]
    assert "more than the 255 this file system allows" in skipped[0]["reason"]
    assert b"caf\xe9.mrc" in (out / "coordinates.star").read_bytes()
    assert not list(out.glob(".*.tmp"))


def test_list_file_paths_are_relative_to_its_folder(run_cli, tiny_model: Path, sim_data: SimData,
                                                    tmp_path: Path) -> None:
    data = _mics(sim_data, tmp_path / "data" / "mics")
    listing = tmp_path / "data" / "selected.txt"
    listing.write_bytes(b"mics/" + sim_data.micrographs[0].name.encode() + b"\n")
    rc, _, err = _pick(run_cli, tiny_model, f"@{listing}", tmp_path / "picks")
    assert rc == 0, err
    assert [p.name for p in (tmp_path / "picks").glob("mic*.star")] == [sim_data.micrographs[0].stem + ".star"]
    assert data.is_dir()
