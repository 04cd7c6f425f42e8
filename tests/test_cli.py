"""The ``cryounet`` command line (cryounet.cli and cryounet.commands.*).

Most runs are in-process through ``cryounet.cli.main`` (fixture ``run_cli``); a few use a real
``python -m cryounet`` subprocess to check the exit codes the shell sees. User errors must give exit
code 2 and one final stderr line ``cryounet <command>: error: <message>`` (``error_line``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import starfile
import torch
from scipy.optimize import linear_sum_assignment

from engine_helpers import REPO, TINY_CONFIG, SimData, error_line

from cryounet.config import CryoUNetConfig
from cryounet.cli import COMMANDS, build_parser
from cryounet.io.coordinates import UNCERTAINTY_LABEL, Picks, read_coordinates, write_star_picks
from cryounet.io.outputs import MARKER_NAME

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _train_argv(sim: SimData, out: Path, config: Path, *extra: object) -> list[object]:
    return ["train", "--micrographs", sim.folder, "--coordinates", sim.folder,
            "--diameter", sim.diameter, "--output", out, "--config", config, "--device", "cpu",
            "--quiet", *extra]


def _mic_folder(sim: SimData, folder: Path, indices=(0, 1)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        shutil.copy(sim.micrographs[i], folder / sim.micrographs[i].name)
    return folder


def _subprocess(*argv: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "cryounet", *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------- the parser
def test_every_command_is_registered() -> None:
    assert set(COMMANDS) >= {"train", "refine", "pick", "evaluate", "postprocess", "simulate", "demo"}
    parser = build_parser()
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from cryounet.cli import main

    for argv in ([], ["frobnicate"], ["pick"], ["evaluate", "--picks", "x"],
                 ["postprocess", "--picks", "a", "--output", "b", "--diameter", "ten"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "usage: cryounet" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from cryounet import __version__
    from cryounet.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"cryounet {__version__}"


# --------------------------------------------------------------------------------- train errors
def test_train_missing_micrographs(run_cli, sim_data: SimData, tiny_config_file: Path,
                                   tmp_path: Path) -> None:
    rc, _, err = run_cli("train", "--micrographs", tmp_path / "absent.mrc", "--coordinates",
                         sim_data.folder, "--diameter", 24, "--output", tmp_path / "m",
                         "--device", "cpu")
    assert rc == 2 and "absent.mrc" in error_line(err, "train")


def test_train_requires_data_arguments(run_cli, tmp_path: Path) -> None:
    rc, _, err = run_cli("train", "--output", tmp_path / "m", "--device", "cpu")
    assert rc == 2 and "--micrographs" in error_line(err, "train")


def test_train_missing_coordinate_folder(run_cli, sim_data: SimData, tiny_config_file: Path,
                                         tmp_path: Path) -> None:
    rc, _, err = run_cli("train", "--micrographs", sim_data.folder, "--coordinates",
                         tmp_path / "nocoords", "--diameter", 24, "--output", tmp_path / "m",
                         "--device", "cpu")
    assert rc == 2 and "nocoords: coordinate folder does not exist" in error_line(err, "train")


def test_train_no_coordinates_matching(run_cli, sim_data: SimData, tiny_config_file: Path,
                                       tmp_path: Path) -> None:
    coords = tmp_path / "coords"
    coords.mkdir()
    write_star_picks(coords / "some_other_name.star", Picks([[10, 10]]))
    rc, _, err = run_cli("train", "--micrographs", sim_data.folder, "--coordinates", coords,
                         "--diameter", 24, "--output", tmp_path / "m", "--device", "cpu")
    assert rc == 2 and "no coordinate file matches" in error_line(err, "train")
    assert not (tmp_path / "m" / "config.json").exists()


def test_train_diameter_larger_than_micrograph(run_cli, sim_data: SimData, tiny_config_file: Path,
                                               tmp_path: Path) -> None:
    argv = _train_argv(sim_data, tmp_path / "m", tiny_config_file)
    argv[argv.index("--diameter") + 1] = 500
    rc, _, err = run_cli(*argv)
    assert rc == 2 and "diameter 500 px is not smaller than the micrograph" in error_line(err, "train")


@pytest.mark.parametrize("config, named", [
    ({"train": {"epochz": 2}}, "epochz"),
    ({"trainn": {"epochs": 2}}, "trainn"),
    ({"model": {"architecture": "vnet"}}, "vnet"),
    ({"loss": {"name": "l3"}}, "l3"),
    ({"augment": {"preset": "extreme"}}, "extreme"),
    ({"train": {"epochs": "two"}}, "train.epochs"),
])
def test_train_bad_config_named(run_cli, sim_data: SimData, tmp_path: Path, config: dict,
                                named: str) -> None:
    cfg = _write_json(tmp_path / "bad.json", {**TINY_CONFIG, **config})
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", cfg))
    assert rc == 2 and named in error_line(err, "train")


def test_train_config_file_problems(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tmp_path / "missing.json"))
    assert rc == 2 and "missing.json: config file does not exist" in error_line(err, "train")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", bad))
    assert rc == 2 and "bad.json: not valid JSON" in error_line(err, "train")


def test_train_zero_epochs(run_cli, sim_data: SimData, tiny_config_file: Path, tmp_path: Path) -> None:
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tiny_config_file, "--epochs", 0))
    assert rc == 2 and "argument --epochs: expected a whole number >= 1, got '0'" in error_line(err, "train")


def test_train_resume_without_checkpoint(run_cli, sim_data: SimData, tiny_config_file: Path,
                                         tmp_path: Path) -> None:
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tiny_config_file, "--resume"))
    assert rc == 2 and "no checkpoint to resume from" in error_line(err, "train")


def test_train_valid_micrographs_without_valid_coordinates(run_cli, sim_data: SimData,
                                                           tiny_config_file: Path,
                                                           tmp_path: Path) -> None:
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tiny_config_file,
                                      "--valid-micrographs", sim_data.micrographs[0]))
    assert rc == 2 and "go together" in error_line(err, "train")
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tiny_config_file,
                                      "--valid-coordinates", sim_data.folder))
    assert rc == 2 and "go together" in error_line(err, "train")


@needs_no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "0"])
def test_train_gpu_requested_and_absent(run_cli, sim_data: SimData, tiny_config_file: Path,
                                        tmp_path: Path, device: str) -> None:
    argv = _train_argv(sim_data, tmp_path / "m", tiny_config_file)
    argv[argv.index("--device") + 1] = device
    rc, _, err = run_cli(*argv)
    assert rc == 2 and "no CUDA GPU is available" in error_line(err, "train")


def test_train_init_from_non_model_folder(run_cli, sim_data: SimData, tiny_config_file: Path,
                                          tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", tiny_config_file,
                                      "--init", tmp_path / "junk"))
    assert rc == 2 and "not a CryoUNet model folder" in error_line(err, "train")


def test_train_corrupt_coordinate_file(run_cli, sim_data: SimData, tiny_config_file: Path,
                                       tmp_path: Path) -> None:
    mics = _mic_folder(sim_data, tmp_path / "mics")
    (mics / "mic_000.txt").write_text("10 20\n30 forty\n")
    rc, _, err = run_cli("train", "--micrographs", mics, "--coordinates", mics, "--diameter", 24,
                         "--output", tmp_path / "m", "--device", "cpu")
    message = error_line(err, "train")
    assert rc == 2 and "mic_000.txt" in message and "line 2" in message


def test_train_corrupt_micrograph(run_cli, sim_data: SimData, tiny_config_file: Path, tmp_path: Path) -> None:
    mics = _mic_folder(sim_data, tmp_path / "mics")
    (mics / "mic_001.mrc").write_bytes(b"\x00" * 100)
    shutil.copy(sim_data.star(0), mics)
    shutil.copy(sim_data.star(1), mics)
    rc, _, err = run_cli("train", "--micrographs", mics, "--coordinates", mics, "--diameter", 24,
                         "--output", tmp_path / "m", "--device", "cpu", "--config", tiny_config_file)
    # skipped with its reason (one unreadable micrograph does not end a training run)
    assert rc == 0 and "skipping" in err and "mic_001.mrc: too small to be an MRC file" in err
    (mics / "mic_000.mrc").write_bytes(b"\x00" * 100)
    rc, _, err = run_cli("train", "--micrographs", mics, "--coordinates", mics, "--diameter", 24,
                         "--output", tmp_path / "m2", "--device", "cpu", "--config", tiny_config_file)
    assert rc == 2 and "none of the labelled micrographs could be read" in error_line(err, "train")


def test_train_datasets_file_problems(run_cli, sim_data: SimData, tiny_config_file: Path,
                                      tmp_path: Path) -> None:
    base = ["train", "--output", tmp_path / "m", "--config", tiny_config_file, "--device", "cpu"]
    rc, _, err = run_cli(*base, "--datasets", tmp_path / "none.json")
    assert rc == 2 and "none.json" in error_line(err, "train")
    for data, words in [({"micrographs": "x"}, "non-empty JSON list"),
                        ([], "non-empty JSON list"),
                        ([{"micrographs": "x"}], "dataset 0 needs"),
                        ([{"micrographs": "x", "coordinates": "y", "diameter": 3, "extra": 1}],
                         "unknown keys")]:
        rc, _, err = run_cli(*base, "--datasets", _write_json(tmp_path / "d.json", data))
        assert rc == 2 and words in error_line(err, "train")
    rc, _, err = run_cli(*base, "--datasets", tmp_path / "d.json", "--diameter", 24)
    assert rc == 2 and "--datasets replaces" in error_line(err, "train")


def test_train_unknown_norm_is_a_user_error(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    cfg = _write_json(tmp_path / "c.json", {**TINY_CONFIG, "model": {"norm": "layer"}})
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", cfg))
    assert rc == 2 and "norm" in error_line(err, "train")


def test_train_config_not_an_object(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    cfg = _write_json(tmp_path / "list.json", [1, 2])
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", cfg))
    assert rc == 2 and "list.json" in error_line(err, "train")


def test_train_datasets_bad_diameter(run_cli, sim_data: SimData, tiny_config_file: Path,
                                     tmp_path: Path) -> None:
    data = [{"micrographs": str(sim_data.folder), "coordinates": str(sim_data.folder),
             "diameter": "big"}]
    rc, _, err = run_cli("train", "--output", tmp_path / "m", "--config", tiny_config_file,
                         "--device", "cpu", "--datasets", _write_json(tmp_path / "d.json", data))
    assert rc == 2 and "d.json" in error_line(err, "train")


def test_blank_device_is_a_user_error(run_cli, sim_data: SimData, tiny_config_file: Path,
                                      tmp_path: Path) -> None:
    argv = _train_argv(sim_data, tmp_path / "m", tiny_config_file)
    argv[argv.index("--device") + 1] = " "
    rc, _, err = run_cli(*argv)
    assert rc == 2 and error_line(err, "train")


# --------------------------------------------------------------------------------- pick errors
@pytest.mark.parametrize("threshold, words", [("abc", "'auto' or a number"),
                                              ("1.5", "between 0 and 1"),
                                              ("-0.1", "between 0 and 1")])
def test_pick_bad_threshold(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path,
                            threshold: str, words: str) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--threshold", threshold, "--device", "cpu")
    assert rc == 2 and words in error_line(err, "pick")
    assert not (tmp_path / "p").exists()


def test_pick_model_problems(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    rc, _, err = run_cli("pick", "--model", tmp_path / "nomodel", "--micrographs",
                         sim_data.micrographs[0], "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "nomodel: model folder does not exist" in error_line(err, "pick")
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("pick", "--model", tmp_path / "empty", "--micrographs",
                         sim_data.micrographs[0], "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "not a CryoUNet model folder" in error_line(err, "pick")


def test_pick_corrupt_weights(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    rc, _, err = run_cli("pick", "--model", broken, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "model.safetensors" in error_line(err, "pick")


def test_pick_missing_micrographs(run_cli, tiny_model: Path, tmp_path: Path) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", tmp_path / "none*.mrc",
                         "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "none*.mrc" in error_line(err, "pick")


def test_pick_corrupt_micrograph_skipped_others_picked(run_cli, tiny_model: Path,
                                                       sim_data: SimData, tmp_path: Path) -> None:
    mics = _mic_folder(sim_data, tmp_path / "mics", indices=(0, 2))
    (mics / "broken.mrc").write_text("this is not an MRC file\n" * 100)
    out = tmp_path / "picks"
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", mics, "--output", out,
                         "--threshold", "0.2", "--device", "cpu")
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if "WARNING" in ln and "broken.mrc" in ln]
    assert len(warnings) == 1 and "skipping" in warnings[0]
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER_NAME) == [
        "coordinates.star", "mic_000.star", "mic_002.star", "pick.json", "skipped.json"]
    index = starfile.read(out / "coordinates.star", always_dict=True)["coordinate_files"]
    assert [Path(p).name for p in index["rlnMicrographName"]] == ["mic_000.mrc", "mic_002.mrc"]
    assert "1 skipped" in err
    skipped = json.loads((out / "skipped.json").read_text())
    assert [Path(s["micrograph"]).name for s in skipped] == ["broken.mrc"]
    assert "broken.mrc: no valid MRC header" in skipped[0]["reason"]


def test_pick_all_corrupt_allowed_for_pipelines(run_cli, tiny_model: Path, tmp_path: Path) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    for name in ("a.mrc", "b.mrc"):
        (mics / name).write_bytes(b"\x01" * 50)
    out = tmp_path / "p"
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", mics, "--output", out,
                         "--device", "cpu", "--allow-all-skipped")
    assert rc == 0, err
    assert sorted(Path(s["micrograph"]).name for s in json.loads((out / "skipped.json").read_text())) \
        == ["a.mrc", "b.mrc"]
    index = starfile.read(out / "coordinates.star", always_dict=True)
    assert all(len(block) == 0 for block in index.values())


def test_pick_all_micrographs_corrupt(run_cli, tiny_model: Path, tmp_path: Path) -> None:
    mics = tmp_path / "mics"
    mics.mkdir()
    for name in ("a.mrc", "b.mrc"):
        (mics / name).write_bytes(b"\x01" * 50)
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", mics,
                         "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "none of the 2 micrographs could be picked" in error_line(err, "pick")


def test_pick_micrograph_smaller_than_particle(run_cli, tiny_model: Path, tmp_path: Path) -> None:
    from cryounet.io.mrc import write_mrc

    write_mrc(tmp_path / "tiny.mrc", np.random.default_rng(0).random((20, 20)))
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", tmp_path / "tiny.mrc",
                         "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "not smaller than the micrograph" in error_line(err, "pick")


@pytest.mark.parametrize("extra, words", [
    (["--batch-size", "0"], "--batch-size"),
    (["--diameter", "-3"], "argument --diameter: the diameter must be a particle diameter between 4")])
def test_pick_bad_options(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path,
                          extra: list[str], words: str) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--device", "cpu", *extra)
    assert rc == 2 and words in error_line(err, "pick")


def test_pick_config_unknown_key(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    cfg = _write_json(tmp_path / "p.json", {"pick": {"tile": 64}})
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--device", "cpu", "--config", cfg)
    assert rc == 2 and "tile" in error_line(err, "pick")


def test_pick_incompatible_ensemble(run_cli, tiny_model: Path, sim_data: SimData,
                                   tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    data = json.loads((other / "config.json").read_text())
    data["diameter_px"] = 30.0
    (other / "config.json").write_text(json.dumps(data))
    rc, _, err = run_cli("pick", "--model", tiny_model, "--model", other, "--micrographs",
                         sim_data.micrographs[0], "--output", tmp_path / "p", "--device", "cpu")
    assert rc == 2 and "cannot be combined" in error_line(err, "pick")


def test_pick_precision(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p16", "--device", "cpu", "--precision", "float16")
    assert rc == 2 and "float16 needs a CUDA GPU" in error_line(err, "pick")
    assert not list((tmp_path / "p16").glob("*.star"))
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "bf16", "--device", "cpu", "--precision", "bfloat16")
    assert rc == 0, err
    assert "forward passes in bfloat16" in err
    assert (tmp_path / "bf16" / f"{sim_data.micrographs[0].stem}.star").is_file()


@needs_no_gpu
def test_pick_gpu_requested_and_absent(run_cli, tiny_model: Path, sim_data: SimData,
                                       tmp_path: Path) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--device", "cuda:0")
    assert rc == 2 and "no CUDA GPU" in error_line(err, "pick")


# -------------------------------------------------------------------------- postprocess errors
def _pick_folder(tmp_path: Path) -> Path:
    picks = tmp_path / "picks"
    picks.mkdir()
    write_star_picks(picks / "mic_000.star",
                     Picks([[50, 50], [55, 50], [3, 100], [100, 100]], [0.9, 0.8, 0.95, 0.3]))
    write_star_picks(picks / "mic_001.star", Picks([[20, 20]], [0.6]))
    return picks


def test_postprocess_output_same_as_picks(run_cli, tmp_path: Path) -> None:
    picks = _pick_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in picks.iterdir()}
    for output in (picks, picks / ".", tmp_path / "x" / ".." / "picks"):
        rc, _, err = run_cli("postprocess", "--picks", picks, "--output", output, "--diameter", 20,
                             "--threshold", "0.5")
        assert rc == 2 and "--output must differ from --picks" in error_line(err, "postprocess")
    assert {p.name: p.read_bytes() for p in picks.iterdir()} == before


@pytest.mark.parametrize("extra, words", [
    (["--diameter", "0"], "argument --diameter: the diameter must be a particle diameter between 4"),
    (["--diameter", "20", "--nms-distance", "-1"], "argument --nms-distance: expected a number >= 0"),
    (["--diameter", "20", "--max-per-micrograph", "-2"], "argument --max-per-micrograph: expected a whole number >= 0"),
    (["--diameter", "20", "--edge-distance", "5"], "--edge-distance needs --micrographs"),
])
def test_postprocess_bad_options(run_cli, tmp_path: Path, extra: list[str], words: str) -> None:
    picks = _pick_folder(tmp_path)
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", tmp_path / "out", *extra)
    assert rc == 2 and words in error_line(err, "postprocess")
    assert not (tmp_path / "out").exists()


def test_postprocess_missing_or_empty_picks(run_cli, tmp_path: Path) -> None:
    rc, _, err = run_cli("postprocess", "--picks", tmp_path / "nope", "--output", tmp_path / "o",
                         "--diameter", 20)
    assert rc == 2 and "picks folder does not exist" in error_line(err, "postprocess")
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("postprocess", "--picks", tmp_path / "empty", "--output", tmp_path / "o",
                         "--diameter", 20)
    assert rc == 2 and "no pick files" in error_line(err, "postprocess")


def test_postprocess_edge_needs_matching_micrograph(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _pick_folder(tmp_path)
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", tmp_path / "o",
                         "--diameter", 20, "--edge-distance", 10, "--micrographs",
                         sim_data.micrographs[0])
    assert rc == 2 and "no micrograph named mic_001" in error_line(err, "postprocess")


def test_postprocess_filters(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _pick_folder(tmp_path)
    out = tmp_path / "filtered"
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", out, "--diameter", 20,
                         "--threshold", "0.5", "--nms-distance", "10", "--edge-distance", "10",
                         "--micrographs", sim_data.micrographs[0], sim_data.micrographs[1],
                         "--max-per-micrograph", "5")
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER_NAME) == ["coordinates.star", "mic_000.star",
                                                                            "mic_001.star", "pick.json"]
    record = json.loads((out / "pick.json").read_text())  # picks of no recorded model, filtered
    assert (record["command"], record["models"], record["threshold"], record["micrographs"]) == \
        ("postprocess", [], 0.5, 2)
    assert record["postprocess"] == {"threshold": 0.5, "nms_distance": 10.0, "edge_distance": 10.0,
                                     "max_particles": 5}
    kept = read_coordinates(out / "mic_000.star")
    # (3, 100) is at the edge, (55, 50) suppressed by (50, 50), (100, 100) below threshold.
    np.testing.assert_allclose(kept.xy, [[50, 50]])
    np.testing.assert_allclose(kept.scores, [0.9])
    np.testing.assert_allclose(read_coordinates(out / "mic_001.star").xy, [[20, 20]])
    index = starfile.read(out / "coordinates.star", always_dict=True)["coordinate_files"]
    assert [Path(p).name for p in index["rlnMicrographName"]] == ["mic_000.mrc", "mic_001.mrc"]


# ---------------------------------------------------------------------------- evaluate errors
def test_evaluate_errors(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _pick_folder(tmp_path)
    rc, _, err = run_cli("evaluate", "--picks", tmp_path / "nope", "--truth", sim_data.folder,
                         "--diameter", 24)
    assert rc == 2 and "picks folder does not exist" in error_line(err, "evaluate")
    rc, _, err = run_cli("evaluate", "--picks", picks, "--truth", tmp_path / "nope", "--diameter", 24)
    assert rc == 2 and "ground-truth folder does not exist" in error_line(err, "evaluate")
    rc, _, err = run_cli("evaluate", "--picks", picks, "--truth", sim_data.folder, "--diameter", 0)
    assert rc == 2 and "argument --diameter: the diameter must be a particle diameter between 4" in \
        error_line(err, "evaluate")
    other = tmp_path / "other"
    other.mkdir()
    write_star_picks(other / "zzz.star", Picks([[1, 1]]))
    rc, _, err = run_cli("evaluate", "--picks", other, "--truth", sim_data.folder, "--diameter", 24)
    assert rc == 2 and "no pick file matches" in error_line(err, "evaluate")


def test_evaluate_prints_and_writes_json(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    # The ground truth scored against itself: everything is perfect.
    rc, out, err = run_cli("evaluate", "--picks", sim_data.folder, "--truth", sim_data.folder,
                           "--diameter", 24, "--json", tmp_path / "e.json")
    assert rc == 0, err
    numbers = dict(re.findall(r"(\w+)=([0-9.]+)", out))
    assert float(numbers["precision"]) == float(numbers["recall"]) == float(numbers["f1"]) == 1.0
    assert float(numbers["ap"]) == 1.0 and int(numbers["micrographs"]) == 4
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["f1"] == 1.0 and data["n_truth"] == int(numbers["truth"]) == 48
    # What the figures mean travels with them.
    assert data["matching_radius"] == 12.0 and data["diameter"] == 24.0 and data["truth_spacing"] > 24
    assert data["radius_warning"] is None and data["threshold"] is None
    assert "tuned on this truth" in data["best_f1_note"]
    assert data["ap_cut_at"] is None and data["ap_note"].startswith("the picks carry no scores (or all the "
                                                                "same one): AP and best F1 are those of a single")
    assert "within 12.0 px of a truth centre" in out and "best F1 1.000" in out


def test_evaluate_refuses_a_radius_wider_than_the_truth_spacing(run_cli, sim_data: SimData,
                                                                 tmp_path: Path) -> None:
    rc, out, err = run_cli("evaluate", "--picks", sim_data.folder, "--truth", sim_data.folder,
                           "--diameter", 300, "--json", tmp_path / "e.json")
    assert rc == 2 and out == "" and not (tmp_path / "e.json").exists()
    line = error_line(err, "evaluate")
    assert "matching radius 150.0 px (0.5 x --diameter 300) is more than the median distance" in line
    assert "--allow-large-radius" in line
    rc, out, err = run_cli("evaluate", "--picks", sim_data.folder, "--truth", sim_data.folder,
                           "--diameter", 300, "--allow-large-radius", "--json", tmp_path / "e.json")
    assert rc == 0 and "WARNING" in err and "scores may be inflated" not in err
    assert "more than the median distance" in json.loads((tmp_path / "e.json").read_text())["radius_warning"]


def test_evaluate_threshold_and_nan_scores(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _pick_folder(tmp_path)
    rc, out, err = run_cli("evaluate", "--picks", picks, "--truth", sim_data.folder, "--diameter", 24,
                           "--threshold", 0.7, "--json", tmp_path / "e.json")
    assert rc == 0, err
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["threshold"] == 0.7 and data["n_picks"] == 3 and data["best_threshold"] >= 0.7
    assert data["ap_cut_at"] == 0.7 and "not comparable" in data["ap_note"]
    write_star_picks(picks / "mic_001.star", Picks([[20, 20], [40, 40]], [0.6, float("nan")]))
    rc, out, err = run_cli("evaluate", "--picks", picks, "--truth", sim_data.folder, "--diameter", 24)
    assert rc == 2 and "best F1" not in out
    assert "mic_001.star: 1 of 2 picks have a score that is not a finite number" in error_line(err, "evaluate")


def test_show_and_evaluate_plot_write_pictures(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _pick_folder(tmp_path)
    rc, _, err = run_cli("show", "--picks", picks, "--micrographs", sim_data.folder, "--diameter", 24,
                         "--count", 2, "--output", tmp_path / "show")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "show").glob("*.png")) == ["mic_000_picks.png", "mic_001_picks.png"]
    assert json.loads((tmp_path / "show" / MARKER_NAME).read_text())["complete"] is True
    rc, _, err = run_cli("show", "--picks", picks, "--micrographs", sim_data.folder, "--diameter", 24,
                         "--output", tmp_path / "show")
    assert rc == 2 and "give --overwrite" in error_line(err, "show")
    rc, _, err = run_cli("evaluate", "--picks", picks, "--truth", sim_data.folder, "--diameter", 24,
                         "--plot", tmp_path / "plot", "--plot-count", 1)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "plot").glob("*.png")) == ["mic_000_evaluated.png", "pr_curve.png"]


# ------------------------------------------------------------------------------ refine, others
def test_refine_errors(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    base = ["refine", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
            "--device", "cpu"]
    rc, _, err = run_cli(*base, "--model", tiny_model, "--output", tiny_model)
    assert rc == 2 and "--output must differ from --model" in error_line(err, "refine")
    rc, _, err = run_cli(*base, "--model", tiny_model, "--output", tmp_path / "r",
                         "--valid-coordinates", sim_data.folder)
    assert rc == 2 and "go together" in error_line(err, "refine")
    rc, _, err = run_cli(*base, "--model", tiny_model, "--output", tmp_path / "r")
    assert rc == 2 and "no unlabelled micrographs" in error_line(err, "refine")
    rc, _, err = run_cli(*base, "--model", tmp_path / "nomodel", "--output", tmp_path / "r")
    assert rc == 2 and "model folder does not exist" in error_line(err, "refine")


def test_refine_runs(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    labelled = _mic_folder(sim_data, tmp_path / "labelled", indices=(0, 1, 2))
    for i in (0, 1, 2):
        shutil.copy(sim_data.star(i), labelled)
    cfg = _write_json(tmp_path / "r.json", {
        "refine": {"epochs_per_round": 1, "tta": False},
        "train": {"steps_per_epoch": 2, "batch_size": 2, "patch_size": 32}})
    out = tmp_path / "refined"
    rc, _, err = run_cli("refine", "--model", tiny_model, "--micrographs", labelled,
                         "--coordinates", labelled, "--unlabelled", sim_data.micrographs[3],
                         "--output", out, "--rounds", 1, "--config", cfg, "--device", "cpu",
                         "--quiet")
    assert rc == 0, err
    history = json.loads((out / "refine_history.json").read_text())
    assert [r["round"] for r in history] == [0, 1]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


def test_simulate_and_demo_errors(run_cli, tmp_path: Path) -> None:
    rc, _, err = run_cli("simulate", "--output", tmp_path / "s", "--size", 0)
    assert rc == 2 and "size" in error_line(err, "simulate")
    rc, _, err = run_cli("demo", "--output", tmp_path / "d", "--micrographs", 1, "--device", "cpu")
    assert rc == 2 and "--micrographs must be at least 2" in error_line(err, "demo")


# ---------------------------------------------------------------------------- real processes
def test_subprocess_user_error_exit_code(tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    proc = _subprocess("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                       "--output", tmp_path / "p", "--threshold", "2", "--device", "cpu")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "cryounet pick: error: --threshold must be between 0 and 1 (a probability), got 2.0")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@needs_no_gpu
def test_subprocess_gpu_absent_and_success(sim_data: SimData, tmp_path: Path) -> None:
    proc = _subprocess("train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
                       "--diameter", sim_data.diameter, "--output", tmp_path / "m", "--device", "cuda")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("cryounet train: error: device 'cuda'")
    proc = _subprocess("evaluate", "--picks", sim_data.folder, "--truth", sim_data.folder,
                       "--diameter", sim_data.diameter)
    assert proc.returncode == 0, proc.stderr
    assert "f1=1.000" in proc.stdout


# ----------------------------------------------------------------------------- end to end
def _reference_scores(picks_dir: Path, truth_dir: Path, radius: float) -> tuple[int, int, int]:
    """TP/picks/truths by an independent maximum matching (assignment on the adjacency)."""
    tp = n_pred = n_true = 0
    for truth_file in sorted(truth_dir.glob("*.star")):
        truth = read_coordinates(truth_file).xy
        pick_file = picks_dir / truth_file.name
        pred = read_coordinates(pick_file).xy if pick_file.is_file() else np.zeros((0, 2))
        n_pred, n_true = n_pred + len(pred), n_true + len(truth)
        if len(pred) and len(truth):
            adjacent = np.linalg.norm(pred[:, None] - truth[None], axis=-1) < radius
            rows, cols = linear_sum_assignment(-adjacent.astype(float))
            tp += int(adjacent[rows, cols].sum())
    return tp, n_pred, n_true


def test_end_to_end(run_cli, tmp_path: Path) -> None:
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    for folder, n, seed in ((train_dir, 4, 11), (test_dir, 2, 12)):
        rc, _, err = run_cli("simulate", "--output", folder, "--micrographs", n, "--size", 192,
                             "--diameter", 24, "--particles", 12, "--seed", seed, "--quiet")
        assert rc == 0, err
    assert len(list(test_dir.glob("*.mrc"))) == 2
    cfg = _write_json(tmp_path / "tiny.json", TINY_CONFIG)
    models = []
    for seed in (0, 1):
        model = tmp_path / f"model_{seed}"
        rc, _, err = run_cli("train", "--micrographs", train_dir, "--coordinates", train_dir,
                             "--diameter", 24, "--output", model, "--config", cfg, "--seed", seed,
                             "--device", "cpu", "--quiet")
        assert rc == 0, err
        models.append(model)
    weights = [(m / "model.safetensors").read_bytes() for m in models]
    assert weights[0] != weights[1]

    picks = tmp_path / "picks"
    rc, _, err = run_cli("pick", "--model", models[0], "--model", models[1], "--micrographs",
                         test_dir, "--output", picks, "--threshold", "0.3", "--device", "cpu")
    assert rc == 0, err
    assert "picked" in err
    assert sorted(p.name for p in picks.iterdir() if p.name != MARKER_NAME) == ["coordinates.star", "mic_000.star",
                                                       "mic_001.star", "pick.json", "skipped.json"]
    assert json.loads((picks / "skipped.json").read_text()) == []
    record = json.loads((picks / "pick.json").read_text())  # the ensemble, by the weights' SHA-256
    assert [m["weights_sha256"] for m in record["models"]] == [
        hashlib.sha256(w).hexdigest() for w in weights]
    assert (record["threshold"], record["micrographs"], record["shard"]) == (0.3, 2, None)
    total = 0
    for star in ("mic_000.star", "mic_001.star"):
        df = next(iter(starfile.read(picks / star, always_dict=True).values()))
        assert UNCERTAINTY_LABEL in df.columns  # ensemble spread column
        total += len(df)
        if len(df):
            assert (df[UNCERTAINTY_LABEL] >= 0).all() and (df[UNCERTAINTY_LABEL] <= 0.5).all()
            assert (df["rlnAutopickFigureOfMerit"] >= 0.3).all()
            assert df["rlnCoordinateX"].between(-0.5, 191.5).all()
    assert total > 0
    spreads = np.concatenate([read_coordinates(picks / s).uncertainty
                              for s in ("mic_000.star", "mic_001.star")])
    assert spreads.max() > 0  # two different models disagree somewhere

    filtered = tmp_path / "filtered"
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", filtered, "--diameter", 24,
                         "--threshold", "0.4", "--nms-distance", 12, "--edge-distance", 6,
                         "--micrographs", test_dir, "--max-per-micrograph", 30)
    assert rc == 0, err
    for star in ("mic_000.star", "mic_001.star"):
        kept = read_coordinates(filtered / star)
        assert len(kept) <= 30 and (kept.scores >= 0.4).all()
        assert kept.uncertainty is not None  # the spread column survives post-processing
        if len(kept) > 1:
            d = np.linalg.norm(kept.xy[:, None] - kept.xy[None], axis=-1)
            assert d[np.triu_indices(len(kept), 1)].min() >= 12
        assert len(kept) <= len(read_coordinates(picks / star))

    rc, out, err = run_cli("evaluate", "--picks", filtered, "--truth", test_dir, "--diameter", 24,
                           "--json", tmp_path / "scores.json")
    assert rc == 0, err
    numbers = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out)}
    tp, n_pred, n_true = _reference_scores(filtered, test_dir, 12.0)
    assert numbers["picks"] == n_pred and numbers["truth"] == n_true == 24
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true
    assert numbers["precision"] == pytest.approx(precision, abs=5e-4)
    assert numbers["recall"] == pytest.approx(recall, abs=5e-4)
    assert numbers["f1"] == pytest.approx(2 * tp / (n_pred + n_true), abs=5e-4)
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert 0 <= numbers["ap"] <= 1 and saved["best_f1"] >= numbers["f1"] - 5e-4
    assert f"best F1 {saved['best_f1']:.3f} at threshold" in out and "tuned on this truth" in out
    assert saved["n_picks"] == n_pred and saved["f1"] == pytest.approx(numbers["f1"], abs=5e-4)


# ------------------------------------------------- accuracy programme: datasets, init, diameter
FAST_TRAIN = {"train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32,
                        "num_threads": 1},
              "model": {"base_channels": 4, "depth": 2}}


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two simulated datasets of 2 micrographs: 24 px particles on 192 px micrographs and 36 px
    particles on 256 px ones (both 16 px at the working scale: 128 and 114 working px)."""
    from cryounet.simulate import SimulationConfig, simulate_dataset

    root = tmp_path_factory.mktemp("datasets")
    for name, size, diameter, seed in (("d24", 192, 24.0, 21), ("d36", 256, 36.0, 22)):
        simulate_dataset(SimulationConfig(n_micrographs=2, size=size, diameter_px=diameter,
                                          particles_per_micrograph=10, seed=seed), root / name)
    return {"d24": root / "d24", "d36": root / "d36"}


def _dataset(folder: Path, diameter: float, **extra) -> dict:
    return {"micrographs": str(folder), "coordinates": str(folder), "diameter": diameter, **extra}


class _StopTraining(BaseException):  # not an Exception: passes the CLI's error boundary
    pass


def _spy_train(monkeypatch: pytest.MonkeyPatch, run: bool) -> list[dict]:
    """Record what ``cryounet train`` hands to the training loop (and run it, or stop there)."""
    from cryounet.training import loop as training

    calls: list[dict] = []
    real = training.train

    def spy(train_items, valid_items, cfg, diameter_px, output, device, **kwargs):
        calls.append({"train": list(train_items), "valid": list(valid_items), "cfg": cfg,
                      "diameter": diameter_px, **kwargs})
        if not run:
            raise _StopTraining
        return real(train_items, valid_items, cfg, diameter_px, output, device, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    return calls


def test_train_on_two_datasets(run_cli, two_datasets, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.models.weights import load_model

    calls = _spy_train(monkeypatch, run=True)
    datasets = _write_json(tmp_path / "d.json", [_dataset(two_datasets["d24"], 24),
                                                 _dataset(two_datasets["d36"], "36")])
    out = tmp_path / "m"
    rc, _, err = run_cli("train", "--datasets", datasets, "--output", out, "--device", "cpu",
                         "--config", _write_json(tmp_path / "c.json", FAST_TRAIN))
    assert rc == 0, err
    (call,) = calls
    # Each dataset is brought to the working scale with its own diameter (16 working px) ...
    for item in call["train"] + call["valid"]:
        assert item.diameter == pytest.approx(16.0, rel=0.01) and len(item.xy) > 0
    # ... and holds out its own validation micrograph: one of each image size on each side.
    assert sorted(it.image.shape for it in call["valid"]) == [(114, 114), (128, 128)]
    assert sorted(it.image.shape for it in call["train"]) == [(114, 114), (128, 128)]
    assert err.count("no validation set given: holding out") == 2
    model = load_model(out)
    assert model.info.diameter_px == 24.0  # the first dataset's
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_train_datasets_with_and_without_validation(run_cli, two_datasets, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_train(monkeypatch, run=False)
    d24 = two_datasets["d24"]
    datasets = _write_json(tmp_path / "d.json", [
        _dataset(two_datasets["d36"], 36.0),
        {"micrographs": [str(d24 / "mic_000.mrc")], "coordinates": str(d24), "diameter": 24,
         "valid_micrographs": str(d24 / "mic_001.mrc"), "valid_coordinates": str(d24)}])
    with pytest.raises(_StopTraining):
        run_cli("train", "--datasets", datasets, "--output", tmp_path / "m", "--device", "cpu",
                "--config", _write_json(tmp_path / "c.json", FAST_TRAIN), "--quiet")
    (call,) = calls
    assert [it.image.shape for it in call["train"]] == [(114, 114), (128, 128)]
    assert [(it.name, it.image.shape) for it in call["valid"]][1] == ("mic_001", (128, 128))
    assert call["valid"][0].image.shape == (114, 114)
    assert call["diameter"] == 36.0


def test_train_datasets_training_only(run_cli, two_datasets, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.simulate import SimulationConfig, simulate_dataset

    negatives = tmp_path / "negatives"  # particle-free: carbon and contamination only
    simulate_dataset(SimulationConfig(n_micrographs=2, size=192, diameter_px=24.0, particles_per_micrograph=0,
                                      carbon_probability=1.0, contamination_range=(1, 2), seed=5), negatives)
    calls = _spy_train(monkeypatch, run=False)
    datasets = _write_json(tmp_path / "d.json", [_dataset(two_datasets["d36"], 36.0),
                                                 _dataset(two_datasets["d24"], 24, validate=False),
                                                 _dataset(negatives, 24, validate=False)])
    with pytest.raises(_StopTraining):
        run_cli("train", "--datasets", datasets, "--output", tmp_path / "m", "--device", "cpu",
                "--config", _write_json(tmp_path / "c.json", FAST_TRAIN), "--quiet")
    (call,) = calls
    # d36 holds one micrograph out; d24 and the negatives all train, none validates.
    assert sorted(it.image.shape for it in call["valid"]) == [(114, 114)]
    assert sorted(it.image.shape for it in call["train"]) == [(114, 114)] + [(128, 128)] * 4
    assert sum(len(it.xy) == 0 for it in call["train"]) == 2


@pytest.mark.parametrize("content, extra, words", [
    ("[{", [], "cannot read the dataset list"),
    ("[]", [], "expected a non-empty JSON list of datasets"),
    ('{"micrographs": "x"}', [], "expected a non-empty JSON list of datasets"),
    ('[{"micrographs": "x", "diameter": 24}]', [], "dataset 0 needs micrographs, coordinates, diameter"),
    ('[5]', [], "dataset 0 needs micrographs, coordinates, diameter"),
    ('[{"micrographs": "x", "coordinates": "y", "diameter": 24}, '
     '{"micrographs": "x", "coordinates": "y", "diameter": 24, "pixel_size": 1}]', [],
     "dataset 1 has unknown keys ['pixel_size']"),
    ('[{"micrographs": "x", "coordinates": "y", "diameter": "big"}]', [],
     "dataset 0: diameter must be a number of pixels, got 'big'"),
    ('[{"micrographs": "x", "coordinates": "y", "diameter": null}]', [],
     "dataset 0: diameter must be a number of pixels"),
    ('[{"micrographs": "x", "coordinates": "y", "diameter": 24}]', ["--micrographs", "x"],
     "--datasets replaces --micrographs/--coordinates/--diameter"),
    ('[{"micrographs": "x", "coordinates": "y", "diameter": 24}]', ["--coordinates", "y"],
     "--datasets replaces"),
])
def test_train_datasets_errors(run_cli, tmp_path: Path, content: str, extra: list,
                               words: str) -> None:
    path = tmp_path / "sets.json"
    path.write_text(content)
    rc, _, err = run_cli("train", "--datasets", path, "--output", tmp_path / "m", "--device", "cpu",
                         *extra)
    assert rc == 2
    message = error_line(err, "train")
    assert words in message
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_train_datasets_missing_file_and_bad_entry_paths(run_cli, two_datasets, tmp_path: Path) -> None:
    rc, _, err = run_cli("train", "--datasets", tmp_path / "none.json", "--output", tmp_path / "m")
    assert rc == 2 and "none.json: cannot read the dataset list" in error_line(err, "train")
    data = [_dataset(two_datasets["d24"], 24), _dataset(tmp_path / "absent", 36)]
    rc, _, err = run_cli("train", "--datasets", _write_json(tmp_path / "d.json", data),
                         "--output", tmp_path / "m", "--device", "cpu")
    assert rc == 2 and "absent" in error_line(err, "train")
    data = [_dataset(two_datasets["d24"], 0)]
    rc, _, err = run_cli("train", "--datasets", _write_json(tmp_path / "d.json", data),
                         "--output", tmp_path / "m", "--device", "cpu")
    assert rc == 2 and "diameter must be a particle diameter between 4 and 32768 pixels, got 0.0" in \
        error_line(err, "train")


def _bad_entry_run(run_cli, two_datasets, tmp_path: Path, **entry) -> tuple[int, str]:
    data = [{**_dataset(two_datasets["d24"], 24), **entry}]
    rc, _, err = run_cli("train", "--datasets", _write_json(tmp_path / "d.json", data),
                         "--output", tmp_path / "m", "--device", "cpu", "--quiet",
                         "--config", _write_json(tmp_path / "c.json", FAST_TRAIN))
    return rc, err


def test_train_datasets_coordinates_not_a_path(run_cli, two_datasets, tmp_path: Path) -> None:
    rc, err = _bad_entry_run(run_cli, two_datasets, tmp_path, coordinates=3)
    assert rc == 2 and "coordinates" in error_line(err, "train")


def test_train_datasets_micrographs_not_a_path(run_cli, two_datasets, tmp_path: Path) -> None:
    rc, err = _bad_entry_run(run_cli, two_datasets, tmp_path, micrographs=5)
    assert rc == 2 and "micrographs" in error_line(err, "train")


def test_train_datasets_nan_diameter(run_cli, two_datasets, tmp_path: Path) -> None:
    rc, err = _bad_entry_run(run_cli, two_datasets, tmp_path, diameter="nan")
    assert rc == 2 and "diameter" in error_line(err, "train")


def test_train_datasets_boolean_diameter(run_cli, two_datasets, tmp_path: Path) -> None:
    rc, err = _bad_entry_run(run_cli, two_datasets, tmp_path, diameter=True)
    assert rc == 2 and "diameter must be a number of pixels, got True" in error_line(err, "train")


def test_train_negative_seed(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    cfg = _write_json(tmp_path / "c.json", FAST_TRAIN)
    rc, _, err = run_cli(*_train_argv(sim_data, tmp_path / "m", cfg, "--seed", -1))
    assert rc == 0 or (rc == 2 and "seed" in error_line(err, "train"))


def _params(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(path)).items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_train_init_from_model_folder(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    from cryounet.config import CryoUNetConfig
    from cryounet.models import build_model
    from cryounet.io.model_folder import ModelInfo
    from cryounet.models.weights import load_model, save_model

    init_cfg = CryoUNetConfig().updated({
        "model": {"architecture": "residual_unet", "base_channels": 4, "depth": 2, "se": True,
                  "blocks_per_level": 2},
        "preprocess": {"working_diameter": 12.0, "normalisation": "standard"}})
    torch.manual_seed(7)
    save_model(tmp_path / "init", build_model(init_cfg.model), ModelInfo(init_cfg, 24.0, 0.5))
    # The run's own config asks for another architecture and preprocessing; --init wins.
    cfg = _write_json(tmp_path / "c.json", {
        "train": {**FAST_TRAIN["train"], "learning_rate": 0.0, "weight_decay": 0.0},
        "model": {"architecture": "unet", "base_channels": 8, "depth": 2},
        "preprocess": {"working_diameter": 16.0}})
    out = tmp_path / "m"
    argv = _train_argv(sim_data, out, cfg, "--init", tmp_path / "init")
    argv.remove("--quiet")
    rc, _, err = run_cli(*argv)
    assert rc == 0, err
    assert "--init: using the architecture of" in err and "--init: using the preprocessing of" in err
    trained = load_model(out)
    assert trained.info.config.model == init_cfg.model
    assert trained.info.config.preprocess == init_cfg.preprocess
    assert trained.info.config.train.learning_rate == 0.0  # the rest of the run's config stays
    start, after = _params(tmp_path / "init" / "model.safetensors"), _params(out / "model.safetensors")
    assert start.keys() == after.keys()
    assert all(torch.equal(start[k], after[k]) for k in start)


def test_train_init_general(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    from cryounet.io.model_folder import GENERAL_MODEL, WEIGHTS_NAME, read_model_info
    from cryounet.models.weights import load_model

    cfg = _write_json(tmp_path / "c.json", {
        "train": {**FAST_TRAIN["train"], "learning_rate": 0.0, "weight_decay": 0.0}})
    out = tmp_path / "m"
    rc, _, err = run_cli(*_train_argv(sim_data, out, cfg, "--init", "general"))
    if not (GENERAL_MODEL / WEIGHTS_NAME).is_file():
        assert rc == 2
        assert "no general starting model is installed" in error_line(err, "train")
        assert str(GENERAL_MODEL) in err
        assert not (out / WEIGHTS_NAME).exists()
    else:
        assert rc == 0, err
        general = read_model_info(GENERAL_MODEL)
        trained = load_model(out)
        assert trained.info.config.model == general.config.model
        assert trained.info.config.preprocess == general.config.preprocess
        start, after = _params(GENERAL_MODEL / WEIGHTS_NAME), _params(out / WEIGHTS_NAME)
        assert all(torch.equal(start[k], after[k]) for k in start)


def _pick_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, tuple[int, int]]]:
    from cryounet.inference import picking as inference

    seen: list[tuple[float, tuple[int, int]]] = []
    real = inference.preprocess

    def spy(micrograph, diameter, cfg):
        image, scale = real(micrograph, diameter, cfg)
        seen.append((diameter, scale.working_shape))
        return image, scale

    monkeypatch.setattr(inference, "preprocess", spy)
    return seen


def _min_distance(xy: np.ndarray) -> float:
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    return float(d[np.triu_indices(len(xy), 1)].min())


def test_pick_diameter_overrides_the_model(run_cli, tiny_model: Path, two_datasets,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _pick_spy(monkeypatch)
    mic = two_datasets["d36"] / "mic_000.mrc"  # 256 px, 36 px particles; the model knows 24 px
    results = {}
    for name, extra in (("model", []), ("override", ["--diameter", 36])):
        out = tmp_path / name
        rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", mic, "--output", out,
                             "--threshold", 0, "--device", "cpu", "--quiet", *extra)
        assert rc == 0, err
        results[name] = read_coordinates(out / "mic_000.star").xy
    # The working scale follows the diameter: 256 / (24 / 16) ~ 171 px, 256 / (36 / 16) ~ 114 px.
    assert seen == [(24.0, (171, 171)), (36.0, (114, 114))]
    # NMS (pick.nms_radius diameters) and edge exclusion (half a diameter) act at the new size.
    factor = 256 / 114
    # (with the saddle test, peaks with no valley between them are merged out to saddle_radius)
    nms = CryoUNetConfig().pick.nms_radius * 16
    merged = max(CryoUNetConfig().pick.nms_radius, CryoUNetConfig().pick.saddle_radius) * 16
    override, default = results["override"], results["model"]
    assert len(override) > 1 and len(default) > len(override)
    assert _min_distance(override) >= nms * factor - 1e-6
    assert _min_distance(default) < merged * factor  # the model's diameter packs picks closer
    assert override.min() >= 8 * factor - 0.5 - 1e-6
    assert override.max() <= 255.5 - 8 * factor + 1e-6
    # The model folder itself is unchanged.
    assert json.loads((tiny_model / "config.json").read_text())["diameter_px"] == 24.0


@pytest.mark.parametrize("value", ["0", "-24", "-0.5"])
def test_pick_diameter_must_be_positive(run_cli, tiny_model: Path, sim_data: SimData,
                                        tmp_path: Path, value: str) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--device", "cpu", "--diameter", value)
    expected = f"the diameter must be a particle diameter between 4 and 32768 pixels, got {float(value)}"
    assert rc == 2 and expected in error_line(err, "pick")
    assert not (tmp_path / "p").exists()


def test_pick_diameter_nan(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p", "--device", "cpu", "--diameter", "nan")
    assert rc == 2 and "--diameter" in error_line(err, "pick")


def test_refine_more_error_paths(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    base = ["refine", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
            "--device", "cpu"]
    # The same folder spelled differently is still the model folder.
    rc, _, err = run_cli(*base, "--model", tiny_model, "--output", tiny_model / ".." / tiny_model.name)
    assert rc == 2 and "--output must differ from --model" in error_line(err, "refine")
    rc, _, err = run_cli(*base, "--model", tiny_model, "--output", tmp_path / "r",
                         "--valid-micrographs", sim_data.micrographs[0])
    assert rc == 2 and "--valid-micrographs and --valid-coordinates go together" in error_line(err, "refine")
    # --unlabelled naming only labelled micrographs leaves nothing to pseudo-label.
    rc, _, err = run_cli(*base, "--model", tiny_model, "--output", tmp_path / "r",
                         "--unlabelled", sim_data.micrographs[0], sim_data.micrographs[1])
    assert rc == 2 and "no unlabelled micrographs to pseudo-label" in error_line(err, "refine")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_pick_uses_tta_by_default_and_no_tta_turns_it_off(run_cli, tiny_model: Path,
                                                          sim_data: SimData, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Models trained since 0.2 store pick.tta = true: plain ``pick`` equals ``--tta``, and
    ``--no-tta`` differs; ``--threshold auto`` follows the matching calibration."""
    info = json.loads((tiny_model / "config.json").read_text())
    assert info["config"]["pick"]["tta"] is True and "threshold_tta" in info
    mic = sim_data.micrographs[0]
    scores = {}
    for name, extra in (("default", []), ("tta", ["--tta"]), ("no_tta", ["--no-tta"])):
        rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", mic, "--output",
                             tmp_path / name, "--threshold", 0, "--device", "cpu", "--quiet", *extra)
        assert rc == 0, err
        scores[name] = read_coordinates(tmp_path / name / f"{mic.stem}.star").scores
    np.testing.assert_array_equal(scores["default"], scores["tta"])
    assert len(scores["no_tta"]) != len(scores["tta"]) or not np.allclose(scores["no_tta"],
                                                                          scores["tta"])
    for extra, key in (([], "threshold_tta"), (["--no-tta"], "threshold")):
        caplog.clear()
        rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", mic, "--output",
                             tmp_path / f"auto_{key}", "--device", "cpu", *extra)
        assert rc == 0, err
        assert f"at threshold {info[key]:.3f}" in caplog.text + err


def test_threads_option_sets_torch_threads(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0], "--output",
                             tmp_path / "p", "--device", "cpu", "--threads", "1", "--no-tta", "--backend", "torch")
        assert rc == 0 and "using device cpu (1 threads)" in err
        assert torch.get_num_threads() == 1
        rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0], "--output",
                             tmp_path / "q", "--threads", "-1")
        assert rc == 2 and "argument --threads" in error_line(err, "pick")
    finally:
        torch.set_num_threads(before)


def test_pick_with_the_general_model(run_cli, tmp_path: Path) -> None:
    """``--model general`` picks a simulated micrograph at the user's --diameter (its picks are
    particles), and without --diameter is refused before anything is written."""
    from scipy.spatial import cKDTree

    from cryounet.io.coordinates import read_coordinates

    rc, _, err = run_cli("simulate", "--output", tmp_path / "sim", "--micrographs", "1", "--size", "512",
                         "--diameter", "40", "--particles", "20", "--snr", "0.3", "--seed", "1")
    assert rc == 0, err
    rc, _, err = run_cli("pick", "--model", "general", "--micrographs", tmp_path / "sim", "--output",
                         tmp_path / "refused", "--device", "cpu", "--threads", "1")
    assert rc == 2
    assert "the general model needs the particle diameter: give --diameter" in error_line(err, "pick")
    assert not (tmp_path / "refused").exists()
    rc, _, err = run_cli("pick", "--model", "general", "--micrographs", tmp_path / "sim", "--output",
                         tmp_path / "picks", "--diameter", "40", "--device", "cpu", "--threads", "1")
    assert rc == 0, err
    picks = read_coordinates(tmp_path / "picks" / "mic_000.star").xy
    truth = read_coordinates(tmp_path / "sim" / "mic_000.star").xy
    assert len(picks) >= 5
    distance, _ = cKDTree(truth).query(picks)
    assert np.mean(distance < 0.5 * 40) >= 0.8  # picks on particles, at the given scale


def test_pick_threshold_from_the_scores(run_cli, tmp_path: Path) -> None:
    """``--threshold otsu`` picks every candidate, then keeps those at or above the threshold read
    from their scores; the record says so. A shard, which sees part of the scores, is refused."""
    from scipy.spatial import cKDTree

    rc, _, err = run_cli("simulate", "--output", tmp_path / "sim", "--micrographs", "2", "--size", "512",
                         "--diameter", "40", "--particles", "25", "--snr", "0.3", "--seed", "3")
    assert rc == 0, err
    rc, _, err = run_cli("pick", "--model", "general", "--micrographs", tmp_path / "sim", "--output",
                         tmp_path / "picks", "--diameter", "40", "--threshold", "otsu", "--device", "cpu",
                         "--threads", "1")
    assert rc == 0, err
    record = json.loads((tmp_path / "picks" / "pick.json").read_text())
    assert record["postprocess"] == {"threshold_rule": "otsu", "candidate_floor": 0.0025}
    assert 0.0025 < record["threshold"] < 1
    for stem in ("mic_000", "mic_001"):
        picks = read_coordinates(tmp_path / "picks" / f"{stem}.star")
        assert len(picks) >= 10 and picks.scores.min() >= record["threshold"]
        distance, _ = cKDTree(read_coordinates(tmp_path / "sim" / f"{stem}.star").xy).query(picks.xy)
        assert np.mean(distance < 0.5 * 40) >= 0.8
    rc, _, err = run_cli("pick", "--model", "general", "--micrographs", tmp_path / "sim", "--output",
                         tmp_path / "shard", "--diameter", "40", "--threshold", "OTSU", "--shard", "1/2",
                         "--device", "cpu")
    assert rc == 2 and "a shard sees only its part" in error_line(err, "pick")
    assert not (tmp_path / "shard").exists()


def test_model_general_is_accepted_by_every_model_option(run_cli, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """export finds the shipped general model up to date; refine without --diameter is refused;
    a folder named 'general' is given as ./general."""
    rc, _, err = run_cli("export", "--model", "general")
    assert rc == 0, err
    assert "model.onnx is up to date" in err
    rc, _, err = run_cli("refine", "--model", "general", "--micrographs", tmp_path, "--coordinates", tmp_path,
                         "--output", tmp_path / "r")
    assert rc == 2 and "needs the particle diameter" in error_line(err, "refine")
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli("export", "--model", "./general")
    assert rc == 2 and "model folder general does not exist" in error_line(err, "export")


# ------------------------------------------------------------------------------ diameter
@pytest.fixture(scope="module")
def sim56(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two micrographs of 56 px particles (a CryoPPP-10028-like size)."""
    from cryounet.simulate import SimulationConfig, simulate_dataset

    folder = tmp_path_factory.mktemp("sim56")
    simulate_dataset(SimulationConfig(n_micrographs=2, size=512, diameter_px=56.0,
                                      particles_per_micrograph=24, seed=4), folder)
    return folder


def test_diameter_command_prints_and_writes_json(run_cli, sim56: Path, tmp_path: Path) -> None:
    rc, out, err = run_cli("diameter", "--micrographs", sim56, "--coordinates", sim56,
                           "--json", tmp_path / "d.json")
    assert rc == 0, err
    estimate = float(re.search(r"particle diameter: (\d+) px", out).group(1))
    assert 42 <= estimate <= 70
    assert all(method in out for method in ("box", "spacing", "profile", "blobs"))
    data = json.loads((tmp_path / "d.json").read_text())
    assert round(data["diameter_px"]) == estimate and len(data["methods"]) == 4
    rc, out, _ = run_cli("diameter", "--micrographs", sim56)  # the micrographs alone
    assert rc == 0 and "blobs" in out and "spacing" not in out
    rc, _, err = run_cli("diameter", "--micrographs", sim56, "--json", tmp_path / "d.json")
    assert rc == 2 and "--overwrite" in error_line(err, "diameter")
    rc, _, err = run_cli("diameter", "--micrographs", sim56, "--coordinates", tmp_path / "none")
    assert rc == 2 and "coordinates folder does not exist" in error_line(err, "diameter")


def test_train_refuses_a_diameter_in_the_wrong_unit(run_cli, sim56: Path, tiny_config_file: Path,
                                                    tmp_path: Path) -> None:
    argv = ["train", "--micrographs", sim56, "--coordinates", sim56, "--output", tmp_path / "m",
            "--config", tiny_config_file, "--device", "cpu", "--quiet"]
    rc, _, err = run_cli(*argv, "--diameter", 300)
    line = error_line(err, "train")
    assert rc == 2 and "--diameter 300 px does not fit" in line and "suggest" in line
    assert "--diameter-check off" in line and not (tmp_path / "m").exists()
    rc, _, err = run_cli(*argv, "--diameter", 160, "--diameter-check", "off")
    assert rc == 0, err
    rc, _, err = run_cli(*argv, "--diameter", 160, "--diameter-check", "warn", "--overwrite")
    assert rc == 0 and "does not fit" in err


def _candidate_folder(tmp_path: Path, picked_at: float | None = None) -> tuple[Path, float]:
    """A pick folder of candidates whose logit scores form two populations (background, particles)."""
    rng = np.random.default_rng(1)
    picks = tmp_path / "candidates"
    picks.mkdir()
    for i in range(3):
        z = np.concatenate([rng.normal(-4.5, 0.6, 300), rng.normal(-0.5, 0.6, 60)])
        scores = 1 / (1 + np.exp(-z))
        write_star_picks(picks / f"mic_{i:03d}.star", Picks(rng.uniform(0, 1000, (len(z), 2)), scores))
    if picked_at is not None:
        _write_json(picks / "pick.json", {"format": "cryounet-picks", "command": "pick", "models": [],
                                          "threshold": picked_at, "diameter_px": 20, "micrographs": 3})
    return picks, 1 / (1 + np.exp(2.5))  # the midpoint between the two modes


def test_postprocess_threshold_from_the_scores(run_cli, tmp_path: Path) -> None:
    picks, midpoint = _candidate_folder(tmp_path)
    out = tmp_path / "out"
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", out, "--diameter", 20, "--threshold", "otsu")
    assert rc == 0, err
    record = json.loads((out / "pick.json").read_text())
    assert record["postprocess"]["threshold_rule"] == "otsu"
    threshold = record["threshold"]
    assert 1 / (1 + np.exp(3.5)) < threshold < 1 / (1 + np.exp(1.5))  # between the populations
    kept = sum(len(read_coordinates(out / f"mic_{i:03d}.star")) for i in range(3))
    assert 150 < kept < 210  # about the 180 particles, few of the 900 background peaks
    assert all(read_coordinates(out / f"mic_{i:03d}.star").scores.min() >= threshold for i in range(3))


def test_postprocess_threshold_rule_warns_about_cut_candidates(run_cli, tmp_path: Path, caplog) -> None:
    picks, _ = _candidate_folder(tmp_path, picked_at=0.3)
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", tmp_path / "o", "--diameter", 20,
                         "--threshold", "otsu")
    assert rc == 0 and "pick with --threshold 0.0025" in err


@pytest.mark.parametrize("value, words", [("0tsu", "argument --threshold: must be a number or one of otsu"),
                                          ("otsu", "at least 50 candidates")])
def test_postprocess_threshold_rule_errors(run_cli, tmp_path: Path, value: str, words: str) -> None:
    picks = _pick_folder(tmp_path)
    rc, _, err = run_cli("postprocess", "--picks", picks, "--output", tmp_path / "o", "--diameter", 20,
                         "--threshold", value)
    assert rc == 2 and words in error_line(err, "postprocess")
    assert not (tmp_path / "o").exists()
