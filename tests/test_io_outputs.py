"""Output folders (cryounet.io.outputs): never write over what the user made; --overwrite removes
exactly the previous run's files (its manifest); never into an input or a folder of another kind;
one run at a time (the lock); an incomplete run is known as such; umask and temporaries."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from cryounet.errors import CryoUNetError
from cryounet.io.atomic import write_text_atomic
from cryounet.io.folder_lock import LOCK_NAME
from cryounet.io.model_folder import MODEL_PATTERNS
from cryounet.io.outputs import (MARKER_NAME, check_output_file, claim_output_folder, input_paths, is_incomplete,
                                 manifest, read_marker)


def test_new_folder_is_claimed_and_completed(tmp_path: Path) -> None:
    folder = claim_output_folder(tmp_path / "picks", "pick", writes=["a.star"])
    marker = read_marker(tmp_path / "picks")
    assert marker == {"command": "pick", "complete": False, "host": socket.gethostname(), "pid": os.getpid(),
                      "files": ["a.star"]}  # what the run plans to write
    assert is_incomplete(tmp_path / "picks")
    (tmp_path / "picks" / "a.star").write_text("x")
    folder.complete()
    assert read_marker(tmp_path / "picks")["complete"] is True
    assert not is_incomplete(tmp_path / "picks")


def test_the_manifest_lists_what_the_run_wrote(tmp_path: Path) -> None:
    out = tmp_path / "picks"
    folder = claim_output_folder(out, "pick", patterns=("*.star", "skipped.json"),
                                 writes=["a.star", "b.star", "coordinates.star", "skipped.json"])
    for name in ("a.star", "coordinates.star", "extra.star", "skipped.json"):
        (out / name).write_text("x")
    (out / "notes.txt").write_text("not of a kind pick writes")
    (out / "sub").mkdir()
    (out / "sub" / "c.star").write_text("x")  # under an entry that is not of pick's kinds
    folder.complete()
    # b.star was planned and never written; extra.star is new and of pick's kinds.
    assert manifest(read_marker(out)) == ["a.star", "coordinates.star", "extra.star", "skipped.json"]


def test_users_files_are_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "mic_001.star").write_text("my own picks")
    with pytest.raises(CryoUNetError, match=r"already holds files \(mic_001.star\); give --overwrite"):
        claim_output_folder(out, "pick", patterns=("*.star",))
    assert (out / "mic_001.star").read_text() == "my own picks"
    assert sorted(p.name for p in out.iterdir()) == ["mic_001.star"]  # nothing touched, no lock file


def test_overwrite_in_an_unmarked_folder_removes_only_what_the_command_writes_now(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    for name in ("mic_001.star", "particles.star", "coordinates.star"):
        (out / name).write_text("old")
    (out / "notes.txt").write_text("keep me")
    (out / "skipped.json").mkdir()  # a folder of a planned name is never removed
    claim_output_folder(out, "pick", overwrite=True, patterns=("*.star", "skipped.json"),
                        writes=["mic_001.star", "coordinates.star", "skipped.json"])
    assert not (out / "mic_001.star").exists() and not (out / "coordinates.star").exists()
    assert (out / "particles.star").read_text() == "old"  # RELION's, not a name pick writes now
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "skipped.json").is_dir()


def test_overwrite_removes_exactly_the_earlier_runs_files(tmp_path: Path) -> None:
    out = tmp_path / "picks"
    folder = claim_output_folder(out, "pick", patterns=("*.star", "skipped.json"), writes=["a.star", "b.star"])
    for name in ("a.star", "b.star", "skipped.json"):
        (out / name).write_text("x")
    folder.complete()
    (out / "notes.txt").write_text("mine")
    (out / "Extract" / "job007").mkdir(parents=True)
    (out / "Extract" / "job007" / "particles.star").write_text("mine")
    (out / "particles.star").write_text("mine")
    with pytest.raises(CryoUNetError, match="holds the outputs of an earlier cryounet pick run"):
        claim_output_folder(out, "pick")
    claim_output_folder(out, "pick", overwrite=True, writes=["c.star"])
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER_NAME, LOCK_NAME, "Extract", "notes.txt",
                                                            "particles.star"])
    assert (out / "Extract" / "job007" / "particles.star").read_text() == "mine"


def test_an_interrupted_runs_planned_files_are_removed_by_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "picks"
    claim_output_folder(out, "pick", writes=["a.star", "b.star"]).release()  # killed: never completed
    (out / "a.star").write_text("finished before the kill")
    (out / ".b.star.x1y2.tmp").write_text("half written")
    (out / "mine.txt").write_text("mine")
    _mark_as_other_process(out)
    with pytest.raises(CryoUNetError, match=r"an earlier run, pid 999999 on elsewhere, was interrupted .cryounet "
                                            r"pick.; give --overwrite to replace them or --resume to continue it"):
        claim_output_folder(out, "pick")
    claim_output_folder(out, "pick", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, LOCK_NAME, "mine.txt"]


def test_resume_keeps_files_and_removes_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "model"
    claim_output_folder(out, "train", patterns=MODEL_PATTERNS)
    (out / "checkpoint.pt").write_text("state")
    (out / ".model.safetensors.abc123.tmp").write_text("half written")
    (out / ".mine.tmp").write_text("the user's")
    with pytest.raises(CryoUNetError, match="--overwrite to replace them or --resume to continue it"):
        claim_output_folder(out, "train")
    folder = claim_output_folder(out, "train", resume=True, patterns=MODEL_PATTERNS)
    assert (out / "checkpoint.pt").exists()
    assert not (out / ".model.safetensors.abc123.tmp").exists()
    assert (out / ".mine.tmp").exists()
    with pytest.raises(CryoUNetError, match="holds the outputs of cryounet train, not refine"):
        claim_output_folder(out, "refine", resume=True)
    folder = claim_output_folder(out, "train", resume=True, patterns=MODEL_PATTERNS)
    folder.complete()
    assert "checkpoint.pt" in manifest(read_marker(out))  # the earlier part of the run stays listed
    with pytest.raises(CryoUNetError, match="already finished: nothing to resume"):
        claim_output_folder(out, "train", resume=True)
    with pytest.raises(CryoUNetError, match="give one"):
        claim_output_folder(out, "train", resume=True, overwrite=True)


def test_resume_in_a_folder_no_run_wrote_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "a.star").write_text("mine")
    with pytest.raises(CryoUNetError, match="nothing to resume: no CryoUNet run wrote this folder"):
        claim_output_folder(out, "pick", resume=True)
    claim_output_folder(tmp_path / "new", "pick", resume=True)  # nothing there yet: a fresh start


@pytest.mark.parametrize("owner, command", [("train", "pick"), ("train", "postprocess"), ("train", "merge"),
                                            ("train", "simulate"), ("pick", "train"), ("simulate", "pick"),
                                            ("refine", "demo")])
def test_a_folder_of_another_kind_is_refused_whatever_the_flags(tmp_path: Path, owner: str, command: str) -> None:
    out = tmp_path / "model"
    folder = claim_output_folder(out, owner, writes=["model.safetensors"])
    (out / "model.safetensors").write_text("weights")
    folder.complete()
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(CryoUNetError, match=f"is a .* of cryounet {owner}; cryounet {command} does not "
                                                "write into it .not even with --overwrite.: choose another"):
            claim_output_folder(out, command, **flags)
    assert (out / "model.safetensors").read_text() == "weights"


@pytest.mark.parametrize("owner, command", [("train", "refine"), ("refine", "train"), ("pick", "postprocess"),
                                            ("postprocess", "merge"), ("merge", "pick")])
def test_commands_of_one_kind_share_folders(tmp_path: Path, owner: str, command: str) -> None:
    out = tmp_path / "out"
    folder = claim_output_folder(out, owner, writes=["a"])
    (out / "a").write_text("x")
    folder.complete()
    claim_output_folder(out, command, overwrite=True)
    assert not (out / "a").exists()


def test_an_input_in_or_around_the_output_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mic = data / "mic_000.mrc"
    mic.write_bytes(b"mrc")
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "mic_000.mrc").symlink_to(mic)
    cases = [(data, [mic], "holds"), (data, [data], "is"), (data / "picks", [data], "lies inside"),
             (tmp_path, [mic], "holds"), (data, [link_dir / "mic_000.mrc"], "holds")]
    for out, inputs, relation in cases:
        with pytest.raises(CryoUNetError, match=f"the output folder {relation} an input of this run"):
            claim_output_folder(out, "pick", overwrite=True, inputs=inputs)
    assert sorted(p.name for p in data.iterdir()) == ["mic_000.mrc"] and not (data / "picks").exists()
    # Beside the inputs, or inside the folder of micrographs given one by one: allowed.
    claim_output_folder(tmp_path / "picks", "pick", inputs=[mic, data])
    claim_output_folder(data / "picks", "pick", inputs=[mic])
    assert input_paths(["@" + str(mic)], [str(data / "*.mrc")], None, str(tmp_path / "absent")) == [mic, mic]


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "picks"
    claim_output_folder(out, "pick", writes=["a.star"]).release()
    (out / "a.star").write_text("being written")
    _mark_as_other_process(out)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)  # another open file: as another process holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for flags in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(CryoUNetError, match=r"output folder is in use by cryounet pick, pid 999999 on "
                                                    r"elsewhere; wait for it to finish, or choose another folder"):
                claim_output_folder(out, "pick", **flags)
        assert (out / "a.star").read_text() == "being written"
    finally:
        os.close(fd)
    claim_output_folder(out, "pick", overwrite=True).complete()  # the lock is free again: an interrupted run
    assert not (out / "a.star").exists()
    assert not (out / LOCK_NAME).exists()  # a finished run removes its lock file


def test_a_nested_output_folder_is_in_the_manifest_from_its_claim(tmp_path: Path) -> None:
    out = tmp_path / "model"
    main = claim_output_folder(out, "train", patterns=MODEL_PATTERNS)
    fold = claim_output_folder(out / "fold_1", "train", patterns=MODEL_PATTERNS)
    (out / "fold_1" / "model.safetensors").write_text("w")
    (out / "fold_1" / "mine.txt").write_text("the user's")
    assert "fold_1/" in manifest(read_marker(out))  # before the run completes: an interruption leaves it listed
    fold.complete()
    main.release()  # interrupted
    claim_output_folder(out, "train", overwrite=True)
    assert sorted(p.name for p in (out / "fold_1").iterdir()) == ["mine.txt"]
    (out / "fold_1" / "mine.txt").unlink()
    claim_output_folder(out / "fold_1", "train", patterns=MODEL_PATTERNS).complete()


def _mark_as_other_process(folder: Path) -> None:
    """Make the marker name another host and process, as a run elsewhere writes it."""
    marker = read_marker(folder)
    marker.update(host="elsewhere", pid=999999)
    (folder / MARKER_NAME).write_text(json.dumps(marker))


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


def test_a_manifest_entry_through_a_linked_folder_is_not_removed(tmp_path: Path) -> None:
    from cryounet.io.manifest import remove_entries

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mic.mrc").write_text("the user's micrograph")
    folder = tmp_path / "picks"
    folder.mkdir()
    (folder / "data").symlink_to(elsewhere)
    (folder / "a.star").write_text("ours")
    assert remove_entries(folder, ["a.star", "data/mic.mrc"]) == 1
    assert (elsewhere / "mic.mrc").read_text() == "the user's micrograph"
    assert not (folder / "a.star").exists()
