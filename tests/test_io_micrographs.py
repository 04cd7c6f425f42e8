"""Micrograph lists (cryounet.io.micrographs): @list files and file names that are not UTF-8."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cryounet.errors import CryoUNetError
from cryounet.io.micrographs import expand_micrographs


def test_list_paths_are_relative_to_the_list_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (data / "mics").mkdir(parents=True)
    for name in ("a.mrc", "b.mrc"):
        (data / "mics" / name).write_bytes(b"")
    (data / "list.txt").write_text(f"mics/a.mrc\r\n# a comment\n\n{data / 'mics' / 'b.mrc'}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working folder plays no part
    assert expand_micrographs([f"@{data / 'list.txt'}"]) == [data / "mics" / "a.mrc", data / "mics" / "b.mrc"]


def test_list_and_folder_with_names_that_are_not_utf8(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.mrc"  # a Latin-1 name
    with open(raw, "wb"):
        pass
    (tmp_path / "list.txt").write_bytes(b"caf\xe9.mrc\n")
    listed = expand_micrographs([f"@{tmp_path / 'list.txt'}"])
    assert [os.fsencode(p) for p in listed] == [raw] and listed[0].is_file()
    assert expand_micrographs([tmp_path]) == listed


def test_a_binary_list_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_bytes(b"\x00\x01\x02mic.mrc")
    with pytest.raises(CryoUNetError, match="list.txt: not a text file"):
        expand_micrographs([f"@{tmp_path / 'list.txt'}"])
    with pytest.raises(CryoUNetError, match="micrograph list file does not exist"):
        expand_micrographs([f"@{tmp_path / 'none.txt'}"])
