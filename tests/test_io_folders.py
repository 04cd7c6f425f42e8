"""The one rule for a file given where its folder is expected, and the sign of an expanded glob
(cryounet.io.folders), with the files that stand for their folder (model files, a pick index)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import INDEX_NAME, is_folder_index, list_coordinate_files
from cryounet.io.folders import expanded_glob, folder_of, glob_hint, input_folder
from cryounet.io.model_folder import check_model_folder, is_model_file, read_model_info, resolve_model


def test_a_folder_or_a_missing_path_is_left_as_it_is(tmp_path: Path) -> None:
    assert folder_of(tmp_path, "picks folder") == tmp_path
    assert folder_of(tmp_path / "none", "picks folder") == tmp_path / "none"
    with pytest.raises(CryoUNetError, match="none: picks folder does not exist"):
        input_folder(tmp_path / "none", "picks folder")


def test_a_file_is_refused_naming_its_folder(tmp_path: Path) -> None:
    (tmp_path / "a.star").write_text("")
    with pytest.raises(CryoUNetError) as info:
        folder_of(tmp_path / "a.star", "coordinates folder")
    assert str(info.value) == f"{tmp_path / 'a.star'} is a file; give the coordinates folder that holds it ({tmp_path})"


def test_a_file_that_stands_for_its_folder_is_taken_and_logged(tmp_path: Path, caplog) -> None:
    (tmp_path / "a.star").write_text("")
    with caplog.at_level(logging.INFO, logger="cryounet"):
        assert input_folder(tmp_path / "a.star", "picks folder", lambda p: True) == tmp_path
    assert f"using the picks folder that holds it, {tmp_path}" in caplog.text


def test_a_pick_index_stands_for_its_folder_a_lone_file_does_not(tmp_path: Path) -> None:
    index = tmp_path / INDEX_NAME
    index.write_text("")
    assert not is_folder_index(index)  # no coordinate file beside it
    (tmp_path / "mic.star").write_text("")
    assert is_folder_index(index) and not is_folder_index(tmp_path / "mic.star")
    assert list_coordinate_files(index) == {"mic": tmp_path / "mic.star"}
    with pytest.raises(CryoUNetError, match="mic.star is a file; give the coordinates folder"):
        list_coordinate_files(tmp_path / "mic.star")


def test_a_model_file_names_its_model_folder(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert not is_model_file(model / "config.json")  # no weights: not a model folder
    with pytest.raises(CryoUNetError, match=r"config.json is a file; give the model folder that holds it"):
        resolve_model(str(model / "config.json"))
    (model / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(model / "model.safetensors")) == model
    assert resolve_model(str(model)) == model
    # the readers refuse a file (their callers use the path they were given)
    assert "is a file; give the model folder that holds it" in check_model_folder(model / "config.json")[0]
    with pytest.raises(CryoUNetError, match="is a file; give the model folder"):
        read_model_info(model / "config.json")


def test_an_expanded_glob_is_recognised(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("picks")
    for name in ("a.star", "b.star", "c.txt"):
        Path("picks", name).write_text("")
    argv = ["--coordinates", "picks/a.star", "picks/b.star", "--output", "out"]
    assert expanded_glob(argv, "unrecognized arguments: picks/b.star") == "'picks/*.star'"
    assert "quote globs ('picks/*.star') so that cryounet expands them, or give the folder" in \
        glob_hint(argv, "picks/a.star is a file")
    assert glob_hint(argv, "the following arguments are required: --diameter") == ""  # not about them
    mixed = ["--coordinates", "picks/a.star", "picks/c.txt"]
    assert expanded_glob(mixed, "picks/c.txt") is None  # not one suffix
    assert expanded_glob(["--x", "picks/a.star", "missing.star"], "missing.star") is None  # one path
    Path("d.star").write_text("")
    Path("e.star").write_text("")
    assert expanded_glob(["--c", "d.star", "e.star"], "e.star") == "'*.star'"
