"""Output folders (cryounet.io.outputs): never write over what the user made; --overwrite removes
the previous run's outputs first; an incomplete run is known as such; umask and temporaries."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cryounet.errors import CryoUNetError
from cryounet.io.atomic import write_text_atomic
from cryounet.io.outputs import (MARKER_NAME, check_output_file, claim_output_folder, is_incomplete,
                                 read_marker)


def test_new_folder_is_claimed_and_completed(tmp_path: Path) -> None:
    folder = claim_output_folder(tmp_path / "picks", "pick")
    assert read_marker(tmp_path / "picks") == {"command": "pick", "complete": False}
    assert is_incomplete(tmp_path / "picks")
    folder.complete()
    assert read_marker(tmp_path / "picks") == {"command": "pick", "complete": True}
    assert not is_incomplete(tmp_path / "picks")


def test_users_files_are_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "mic_001.star").write_text("my own picks")
    with pytest.raises(CryoUNetError, match=r"already holds files \(mic_001.star\); give --overwrite"):
        claim_output_folder(out, "pick", patterns=("*.star",))
    assert (out / "mic_001.star").read_text() == "my own picks"
    assert not (out / MARKER_NAME).exists()


def test_overwrite_in_an_unmarked_folder_removes_only_what_the_command_writes(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "mic_001.star").write_text("old picks")
    (out / "notes.txt").write_text("keep me")
    claim_output_folder(out, "pick", overwrite=True, patterns=("*.star", "skipped.json"))
    assert not (out / "mic_001.star").exists()
    assert (out / "notes.txt").read_text() == "keep me"


def test_an_earlier_run_is_refused_then_removed_whole_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "picks"
    claim_output_folder(out, "pick").complete()
    for name in ("a.star", "b.star", "skipped.json"):
        (out / name).write_text("x")
    with pytest.raises(CryoUNetError, match="holds the outputs of an earlier cryounet pick run"):
        claim_output_folder(out, "pick")
    claim_output_folder(out, "pick", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME]  # nothing stale survives


def test_resume_keeps_files_and_removes_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "model"
    claim_output_folder(out, "train")
    (out / "checkpoint.pt").write_text("state")
    (out / ".model.safetensors.abc123.tmp").write_text("half written")
    with pytest.raises(CryoUNetError, match="--overwrite to replace them or --resume to continue it"):
        claim_output_folder(out, "train")
    claim_output_folder(out, "train", resume=True)
    assert (out / "checkpoint.pt").exists()
    assert not (out / ".model.safetensors.abc123.tmp").exists()
    with pytest.raises(CryoUNetError, match="holds the outputs of cryounet train, not refine"):
        claim_output_folder(out, "refine", resume=True)


def test_a_folder_with_only_a_marker_is_reused(tmp_path: Path) -> None:
    out = tmp_path / "picks"
    claim_output_folder(out, "pick")  # e.g. a run that failed before writing anything
    claim_output_folder(out, "pick")


def test_output_path_that_is_a_file_or_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CryoUNetError, match="is an existing file, not a folder"):
        claim_output_folder(tmp_path / "file", "pick")
    # The tests run as root, for whom mode bits do not block writes: the system's answers for a
    # read-only folder are simulated where CryoUNet asks for them.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access, real_mkdir = os.access, Path.mkdir
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))

    def mkdir(self, *args, **kwargs):
        if self.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(CryoUNetError, match="locked: the output folder is not writable"):
        claim_output_folder(locked, "pick")
    with pytest.raises(CryoUNetError, match="sub: cannot create the output folder .Permission denied"):
        claim_output_folder(locked / "sub", "pick")


def test_check_output_file(tmp_path: Path) -> None:
    target = tmp_path / "scores.json"
    assert check_output_file(target) == target
    target.write_text("{}")
    with pytest.raises(CryoUNetError, match="file exists; give --overwrite"):
        check_output_file(target)
    check_output_file(target, overwrite=True)
    with pytest.raises(CryoUNetError, match="is a folder"):
        check_output_file(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask
