"""Errors that point the right way (issue 32, item 4), through the real command line: a file given
where its folder is expected, globs the shell expanded, the sub-command's own usage, the missing
option named."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import REPO, SimData, error_line

from cryounet.io.coordinates import INDEX_NAME, write_star_index


def _picks_folder(sim: SimData, folder: Path) -> Path:
    """A pick folder as ``pick`` writes one: per-micrograph STAR files and the coordinates.star index."""
    folder.mkdir()
    entries = []
    for i, mic in enumerate(sim.micrographs):
        shutil.copy(sim.star(i), folder / f"{mic.stem}.star")
        entries.append((str(mic), str(folder / f"{mic.stem}.star")))
    write_star_index(folder / INDEX_NAME, entries)
    return folder


def _is_a_file(err: str, command: str, path: Path, what: str) -> None:
    line = error_line(err, command)
    assert f"{path} is a file; give the {what} that holds it ({path.parent})" in line, line
    assert "does not exist" not in line


# ============================================================== a file where a folder is expected
def test_train_refuses_a_lone_coordinate_file_naming_its_folder(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    rc, _, err = run_cli("train", "--micrographs", sim_data.folder, "--coordinates", sim_data.star(0),
                         "--diameter", sim_data.diameter, "--output", tmp_path / "m", "--device", "cpu")
    assert rc == 2
    _is_a_file(err, "train", sim_data.star(0), "coordinates folder")
    assert not (tmp_path / "m").exists()


def test_train_dataset_list_with_a_coordinate_file_names_its_folder(run_cli, sim_data: SimData,
                                                                    tiny_config_file: Path, tmp_path: Path) -> None:
    datasets = tmp_path / "datasets.json"
    datasets.write_text(json.dumps([{"micrographs": [str(sim_data.folder)], "coordinates": str(sim_data.star(0)),
                                     "diameter": sim_data.diameter}]))
    rc, _, err = run_cli("train", "--datasets", datasets, "--output", tmp_path / "m", "--config", tiny_config_file,
                         "--device", "cpu")
    assert rc == 2
    _is_a_file(err, "train", sim_data.star(0), "coordinate folder")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_pick_takes_a_model_file_for_its_folder(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path,
                                                name: str) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model / name, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "picks", "--device", "cpu", "--no-tta")
    assert rc == 0, err
    assert f"{tiny_model / name} is a file: using the model folder that holds it, {tiny_model}" in err
    assert (tmp_path / "picks" / f"{sim_data.micrographs[0].stem}.star").is_file()


def test_pick_refuses_a_file_outside_a_model_folder(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    weights = tmp_path / "downloads" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"\0" * 16)
    rc, _, err = run_cli("pick", "--model", weights, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "picks")
    assert rc == 2
    _is_a_file(err, "pick", weights, "model folder")
    assert "usage: cryounet pick" in err


def test_evaluate_takes_a_pick_folders_index_for_the_folder(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _picks_folder(sim_data, tmp_path / "picks")
    rc, out, err = run_cli("evaluate", "--picks", picks / INDEX_NAME, "--truth", sim_data.folder,
                           "--diameter", sim_data.diameter)
    assert rc == 0, err
    assert f"using the picks folder that holds it, {picks}" in err
    assert "precision=1.000 recall=1.000" in out, out


@pytest.mark.parametrize("option", ["--picks", "--truth"])
def test_evaluate_refuses_one_coordinate_file(run_cli, sim_data: SimData, tmp_path: Path, option: str) -> None:
    picks = _picks_folder(sim_data, tmp_path / "picks")
    given = {"--picks": picks, "--truth": sim_data.folder}
    given[option] = (picks if option == "--picks" else sim_data.folder) / f"{sim_data.micrographs[0].stem}.star"
    rc, _, err = run_cli("evaluate", "--picks", given["--picks"], "--truth", given["--truth"],
                         "--diameter", sim_data.diameter)
    assert rc == 2
    _is_a_file(err, "evaluate", given[option], "picks folder" if option == "--picks" else "ground-truth folder")


def test_postprocess_takes_the_index_and_refuses_a_pick_file(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    picks = _picks_folder(sim_data, tmp_path / "picks")
    rc, _, err = run_cli("postprocess", "--picks", picks / INDEX_NAME, "--output", tmp_path / "out",
                         "--diameter", sim_data.diameter)
    assert rc == 0, err
    assert "using the picks folder that holds it" in err
    assert len(list((tmp_path / "out").glob("mic_*.star"))) == len(sim_data.micrographs)
    one = picks / f"{sim_data.micrographs[0].stem}.star"
    rc, _, err = run_cli("postprocess", "--picks", one, "--output", tmp_path / "out2", "--diameter", sim_data.diameter)
    assert rc == 2
    _is_a_file(err, "postprocess", one, "picks folder")
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("command", ["merge", "show"])
def test_merge_and_show_refuse_a_pick_file(run_cli, sim_data: SimData, tmp_path: Path, command: str) -> None:
    picks = _picks_folder(sim_data, tmp_path / "picks")
    one = picks / f"{sim_data.micrographs[0].stem}.star"
    extra = ["--micrographs", sim_data.micrographs[0]] if command == "show" else []
    rc, _, err = run_cli(command, "--picks", one, *extra, "--output", tmp_path / "out")
    assert rc == 2
    _is_a_file(err, command, one, "picks folder")


def test_diameter_refuses_a_coordinate_file(run_cli, sim_data: SimData) -> None:
    rc, _, err = run_cli("diameter", "--micrographs", sim_data.micrographs[0], "--coordinates", sim_data.star(0))
    assert rc == 2
    _is_a_file(err, "diameter", sim_data.star(0), "coordinates folder")


# ======================================================================= globs and sub-command usage
def _cli(*argv: object, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "cryounet", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_expanded_glob_gets_the_subcommands_usage_and_the_hint(sim_data: SimData) -> None:
    stars = sorted(sim_data.folder.glob("*.star"))  # what the shell makes of --coordinates DIR/*.star
    proc = _cli("train", "--micrographs", sim_data.folder, "--coordinates", *stars, "--diameter", 24,
                "--output", "never")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: cryounet train")
    line = error_line(proc.stderr, "train")
    assert f"is a file; give the coordinates folder that holds it ({sim_data.folder})" in line
    assert f"quote globs ('{sim_data.folder}/*.star') so that cryounet expands them, or give the folder" in line


def test_unrecognized_arguments_are_named_under_the_subcommands_usage(sim_data: SimData, tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("a.json", "b.json", "c.json"):
        (configs / name).write_text("{}")
    proc = _cli("pick", "--model", "m", "--micrographs", sim_data.micrographs[0], "--output", tmp_path / "p",
                "--config", *sorted(configs.iterdir()))
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: cryounet pick") and "usage: cryounet [-h]" not in proc.stderr
    line = error_line(proc.stderr, "pick")
    assert f"unrecognized arguments: {configs / 'b.json'} {configs / 'c.json'}" in line
    assert f"quote globs ('{configs}/*.json')" in line
    assert not (tmp_path / "p").exists()


def test_an_unrecognized_option_gets_no_glob_hint(sim_data: SimData, tmp_path: Path) -> None:
    proc = _cli("evaluate", "--picks", sim_data.folder, "--truth", sim_data.folder, "--diameter", 24,
                "--treshold", "0.5")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: cryounet evaluate")
    line = error_line(proc.stderr, "evaluate")
    assert line.endswith("unrecognized arguments: --treshold 0.5")


def test_a_glob_in_the_working_folder_gets_the_hint(tmp_path: Path) -> None:
    for i in range(8):
        (tmp_path / f"m{i}.star").write_text("")
    proc = _cli("diameter", "--micrographs", "x.mrc", "--coordinates", *[f"m{i}.star" for i in range(8)],
                cwd=tmp_path)
    line = error_line(proc.stderr, "diameter")
    assert "m0.star is a file; give the coordinates folder that holds it (.)" in line
    assert "quote globs ('*.star')" in line


def test_unrecognized_glob_is_counted_past_five(tmp_path: Path, sim_data: SimData) -> None:
    for i in range(8):
        (tmp_path / f"c{i}.json").write_text("{}")
    proc = _cli("pick", "--model", "m", "--micrographs", sim_data.micrographs[0], "--output", "p",
                "--config", *[f"c{i}.json" for i in range(8)], cwd=tmp_path)
    line = error_line(proc.stderr, "pick")
    assert "unrecognized arguments: c1.json c2.json c3.json c4.json c5.json ... (7 in all)" in line
    assert "quote globs ('*.json')" in line


# ======================================================================= the missing option named
def test_a_missing_option_is_named_with_the_subcommands_usage(sim_data: SimData) -> None:
    proc = _cli("train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder, "--diameter", 24)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: cryounet train")
    assert error_line(proc.stderr, "train").endswith("the following arguments are required: --output")


def test_our_own_check_names_the_missing_options(run_cli, sim_data: SimData, tmp_path: Path) -> None:
    rc, _, err = run_cli("train", "--micrographs", sim_data.folder, "--output", tmp_path / "m")
    assert rc == 2
    assert "give --coordinates, --diameter (or --datasets" in error_line(err, "train")


def test_help_says_where_list_paths_are_resolved(run_cli) -> None:
    rc, out, _ = run_cli("pick", "--help")
    assert rc == 0 and "relative to the list file's folder" in " ".join(out.split())
