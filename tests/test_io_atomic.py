"""Atomic writes (cryounet.io.atomic): a failing write never damages the file it replaces."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cryounet.io.atomic import (NAME_MAX, atomic_path, name_too_long, temporary_prefix, write_bytes_atomic,
                                write_text_atomic)


def _names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_text_creates_parents_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    write_text_atomic(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert _names(target.parent) == ["out.txt"]


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content that is longer")
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_failure_inside_atomic_path_keeps_old_file(tmp_path: Path, exc_type: type) -> None:
    target = tmp_path / "picks.star"
    target.write_text("old\n")
    with pytest.raises(exc_type):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("partial new con")
            raise exc_type("disk full")
    assert target.read_text() == "old\n"
    assert _names(tmp_path) == ["picks.star"]


def test_failing_write_text_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "coordinates.star"
    target.write_text("complete old file\n")
    real_write_text = Path.write_text

    def half_then_fail(self: Path, text: str, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(target, "a much longer new file that will not fit\n")
    monkeypatch.undo()
    assert target.read_text() == "complete old file\n"
    assert _names(tmp_path) == ["coordinates.star"]


def test_failing_star_write_keeps_old_picks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.io.coordinates import Picks, read_coordinates, write_star_picks

    target = tmp_path / "mic.star"
    write_star_picks(target, Picks([[1.0, 2.0]], [0.5]))
    before = target.read_bytes()
    real_write_text = Path.write_text

    def fail(self: Path, text: str, *args, **kwargs):
        real_write_text(self, text[:10], *args, **kwargs)
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(OSError):
        write_star_picks(target, Picks(np.arange(20.0).reshape(10, 2)))
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert len(read_coordinates(target)) == 1
    assert _names(tmp_path) == ["mic.star"]


def test_failing_weights_write_keeps_old_weights(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    from cryounet.models.weights import save_weights

    target = tmp_path / "model.safetensors"
    net = torch.nn.Linear(3, 2)
    save_weights(target, net)
    before = target.read_bytes()

    def partial_save(state, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x00" * 7)
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(safetensors.torch, "save_file", partial_save)
    with pytest.raises(RuntimeError, match="killed"):
        save_weights(target, torch.nn.Linear(3, 2))
    assert target.read_bytes() == before
    assert _names(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("length", [200, 240, 250, 255])
def test_a_long_name_gets_a_temporary_name_within_the_limit(tmp_path: Path, length: int) -> None:
    name = "\u00e9" * 20 + "m" * (length - 45) + ".star"  # multi-byte characters count as bytes
    assert len(os.fsencode(name)) == length
    target = tmp_path / name
    seen = []
    with atomic_path(target) as tmp:
        seen.append(tmp.name)
        tmp.write_text("data")
    assert target.read_text() == "data" and _names(tmp_path) == [name]
    assert len(os.fsencode(seen[0])) <= NAME_MAX and seen[0].startswith(".") and seen[0].endswith(".tmp")
    # two long names that share their start get different temporary prefixes
    assert temporary_prefix("a" * 250 + "1") != temporary_prefix("a" * 250 + "2")


def test_name_too_long_says_why(tmp_path: Path) -> None:
    assert name_too_long(tmp_path, "m" * 250 + ".star") is None
    problem = name_too_long(tmp_path, "m" * 251 + ".star")
    assert problem is not None and "256 bytes, more than the 255" in problem and "shorter name" in problem


def test_text_with_names_that_are_not_utf8_is_written_as_their_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(b"mic\xff.mrc")  # as os.listdir gives a Latin-1 file name on a UTF-8 system
    write_text_atomic(tmp_path / "index.star", f"{name}\n")
    assert (tmp_path / "index.star").read_bytes() == b"mic\xff.mrc\n"
