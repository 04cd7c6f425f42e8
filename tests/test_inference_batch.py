"""Picking lists of micrographs and writing STAR files (cryounet.inference.batch, cryounet.io.picks_folder)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import starfile

from engine_helpers import AffineNet, loaded_model, spots_micrograph


from cryounet.config import PickConfig
from cryounet.errors import CryoUNetError
from cryounet.inference.picker import Picker
from cryounet.io.coordinates import Picks, read_coordinates
from cryounet.io.mrc import write_mrc
from cryounet.inference.batch import pick_micrographs
from cryounet.io.picks_folder import read_pick_record, warn_if_empty, write_picks


def _picker(threshold: float = 0.5) -> Picker:
    return Picker([loaded_model(AffineNet(0.05, -5.0), threshold=threshold)],
                  PickConfig(edge_exclusion=0.0))


def _micrographs(folder: Path, n: int = 2) -> tuple[list[Path], np.ndarray]:
    image, xy = spots_micrograph()
    paths = []
    for i in range(n):
        path = folder / f"good_{i}.mrc"
        write_mrc(path, image)
        paths.append(path)
    return paths, xy


def test_pick_writes_star_files_and_index(tmp_path: Path) -> None:
    mics, xy = _micrographs(tmp_path / "mics")
    out = tmp_path / "picks"
    summary = pick_micrographs(_picker(threshold=0.5), mics, out, None, progress=False)
    assert summary.threshold == 0.5  # the calibrated one when none is given
    assert summary.picked == {"good_0": 4, "good_1": 4} and summary.total == 8
    assert not summary.failed and summary.empty == []
    for mic in mics:
        picks = read_coordinates(out / f"{mic.stem}.star")
        assert len(picks) == 4 and (picks.scores >= 0.5).all()
        assert np.abs(np.sort(picks.xy, axis=0) - np.sort(xy, axis=0)).max() < 0.1
    index = starfile.read(out / "coordinates.star", always_dict=True)["coordinate_files"]
    assert list(index["rlnMicrographName"]) == [str(m) for m in mics]
    assert list(index["rlnMicrographCoordinates"]) == [str(out / f"{m.stem}.star") for m in mics]


def test_resume_keeps_finished_star_files_and_indexes_them_all(tmp_path: Path) -> None:
    mics, _ = _micrographs(tmp_path / "mics", n=3)
    out = tmp_path / "picks"
    out.mkdir()
    from cryounet.io.coordinates import write_star_picks

    write_star_picks(out / "good_1.star", Picks(np.array([[5.0, 5.0]])))  # finished by the interrupted run
    (out / "good_2.star").write_text("data_\nloop_\n_rlnCoordinateX #1\n")  # unreadable: picked again
    kept = (out / "good_1.star").read_bytes()
    summary = pick_micrographs(_picker(), mics, out, None, progress=False, resume=True)
    assert summary.picked == {"good_0": 4, "good_1": 1, "good_2": 4}
    assert (out / "good_1.star").read_bytes() == kept
    index = starfile.read(out / "coordinates.star", always_dict=True)["coordinate_files"]
    assert list(index["rlnMicrographName"]) == [str(m) for m in mics]


def test_explicit_threshold_wins(tmp_path: Path) -> None:
    mics, _ = _micrographs(tmp_path / "mics", n=1)
    summary = pick_micrographs(_picker(threshold=0.5), mics, tmp_path / "p", 0.999999, progress=False)
    assert summary.threshold == 0.999999 and summary.picked == {"good_0": 0}


def test_corrupt_micrograph_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mics, _ = _micrographs(tmp_path / "mics")
    bad = tmp_path / "mics" / "bad.mrc"
    bad.write_bytes(b"not an mrc file\n" * 200)
    out = tmp_path / "picks"
    with caplog.at_level(logging.WARNING, logger="cryounet"):
        summary = pick_micrographs(_picker(), [mics[0], bad, mics[1]], out, 0.5, progress=False)
    assert set(summary.picked) == {"good_0", "good_1"}
    assert list(summary.failed) == [str(bad)] and str(bad) in summary.failed[str(bad)]
    assert any("skipping" in r.getMessage() and "bad.mrc" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in out.iterdir()) == ["coordinates.star", "good_0.star", "good_1.star",
                                                     "pick.json", "skipped.json"]
    record = read_pick_record(out)
    assert (record.command, record.micrographs, record.threshold, record.shard) == ("pick", 3, 0.5, None)
    assert record.models == [{"folder": str(Path("m").resolve()), "weights_sha256": None}]  # a network without files
    index = starfile.read(out / "coordinates.star", always_dict=True)["coordinate_files"]
    assert len(index) == 2


def test_all_corrupt_raises(tmp_path: Path) -> None:
    bad = []
    for i in range(2):
        path = tmp_path / f"bad_{i}.mrc"
        path.write_bytes(b"\x00" * 10)
        bad.append(path)
    with pytest.raises(CryoUNetError, match="none of the 2 micrographs could be picked"):
        pick_micrographs(_picker(), bad, tmp_path / "out", 0.5, progress=False)
    assert not (tmp_path / "out" / "coordinates.star").exists()


def _varied_micrographs(folder: Path, n: int) -> list[Path]:
    """``n`` micrographs with the spots in different places (each picks differently)."""
    image, _ = spots_micrograph()
    paths = []
    for i in range(n):
        path = folder / f"mic_{i}.mrc"
        write_mrc(path, np.roll(image, (3 * i, 5 * i), axis=(0, 1)))
        paths.append(path)
    return paths


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_pick_what_picking_in_turn_picks(tmp_path: Path, workers: int) -> None:
    mics = _varied_micrographs(tmp_path / "mics", 7)
    bad = tmp_path / "mics" / "bad.mrc"
    bad.write_bytes(b"not an mrc file\n" * 200)
    mics.insert(3, bad)
    in_turn = pick_micrographs(_picker(), mics, tmp_path / "in_turn", 0.5, progress=False, workers=0)
    ahead = pick_micrographs(_picker(), mics, tmp_path / "ahead", 0.5, progress=False, workers=workers)
    assert list(ahead.picked.items()) == list(in_turn.picked.items())  # the same, in the same order
    assert list(ahead.failed) == list(in_turn.failed) == [str(bad)]
    for mic in mics:
        if mic != bad:
            assert (tmp_path / "ahead" / f"{mic.stem}.star").read_bytes() == \
                (tmp_path / "in_turn" / f"{mic.stem}.star").read_bytes()
    index = starfile.read(tmp_path / "ahead" / "coordinates.star", always_dict=True)["coordinate_files"]
    assert list(index["rlnMicrographName"]) == [str(m) for m in mics if m != bad]
    assert (tmp_path / "ahead" / "skipped.json").read_text() == (tmp_path / "in_turn" / "skipped.json").read_text()


class _RecordingPicker(Picker):
    """Records which thread prepared, ran the network on and finished which micrograph."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[str, str]] = []

    def prepare(self, micrograph):
        self.events.append(("prepare", threading.current_thread().name))
        return super().prepare(micrograph)

    def probability(self, image):
        self.events.append(("network", threading.current_thread().name))
        return super().probability(image)

    def finish(self, *args):
        self.events.append(("finish", threading.current_thread().name))
        return super().finish(*args)


def test_workers_read_ahead_and_find_peaks_behind_the_network(tmp_path: Path) -> None:
    mics = _varied_micrographs(tmp_path / "mics", 6)
    picker = _RecordingPicker([loaded_model(AffineNet(0.05, -5.0), threshold=0.5)],
                              PickConfig(edge_exclusion=0.0, workers=2))
    pick_micrographs(picker, mics, tmp_path / "p", 0.5, progress=False)  # workers from pick.workers
    threads = {step: {name for s, name in picker.events if s == step} for step in ("prepare", "network", "finish")}
    assert threads["network"] == {threading.current_thread().name}
    assert threads["prepare"] and all(name.startswith("cryounet-read") for name in threads["prepare"])
    assert threads["finish"] and all(name.startswith("cryounet-peaks") for name in threads["finish"])
    assert sorted(s for s, _ in picker.events) == ["finish"] * 6 + ["network"] * 6 + ["prepare"] * 6
    picker.events.clear()
    pick_micrographs(picker, mics, tmp_path / "q", 0.5, progress=False, workers=0)
    assert {name for _, name in picker.events} == {threading.current_thread().name}
    assert [s for s, _ in picker.events] == ["prepare", "network", "finish"] * 6


def test_a_failure_that_is_not_the_micrographs_stops_the_run(tmp_path: Path, monkeypatch) -> None:
    """An error that is not about one micrograph (a full disk, say) ends the run: no index is
    written and no worker is left behind."""
    from cryounet.inference import batch

    mics = _varied_micrographs(tmp_path / "mics", 6)
    written = []

    def full_disk(path: Path, picks) -> None:
        if len(written) == 2:
            raise OSError(28, "No space left on device", str(path))
        written.append(path)

    monkeypatch.setattr(batch, "write_star_picks", full_disk)
    before = threading.active_count()
    with pytest.raises(OSError, match="No space left"):
        pick_micrographs(_picker(), mics, tmp_path / "p", 0.5, progress=False, workers=2)
    assert not (tmp_path / "p" / "coordinates.star").exists()
    assert threading.active_count() == before


def test_negative_workers_are_refused(tmp_path: Path) -> None:
    mics = _varied_micrographs(tmp_path / "mics", 1)
    with pytest.raises(CryoUNetError, match="pick.workers must not be negative, got -1"):
        pick_micrographs(_picker(), mics, tmp_path / "p", 0.5, progress=False, workers=-1)
    with pytest.raises(CryoUNetError, match="pick.workers must not be negative"):
        from cryounet.config import CryoUNetConfig
        CryoUNetConfig().updated({"pick": {"workers": -2}}).validate("test")


def test_warn_if_empty(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cryounet"):
        warn_if_empty({"a": 0, "b": 3, "c": 4})  # 1 of 3 empty: > 20%
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "1 of 3 micrographs have no picks" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryounet"):
        warn_if_empty({f"m{i}": 1 for i in range(9)} | {"z": 0})  # 1 of 10: only info
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_write_picks(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder"
    write_picks(out, [("a", "/data/a.mrc", Picks([[1, 2]], [0.5])),
                      ("b", "/data/b.mrc", Picks(np.zeros((0, 2))))])
    assert sorted(p.name for p in out.iterdir()) == ["a.star", "b.star", "coordinates.star"]
    assert len(read_coordinates(out / "a.star")) == 1 and len(read_coordinates(out / "b.star")) == 0


def test_pick_records_round_trip_and_shard_checks(tmp_path: Path) -> None:
    """pick.json reads back; check_shards joins one split's shards and names what is wrong."""
    from cryounet.errors import InputFileError
    from cryounet.io.picks_folder import RECORD_NAME, PickRecord, check_shards, write_pick_record

    model = [{"folder": "/models/a", "weights_sha256": "ab" * 32}]

    def record(shard: tuple[int, int] | None, **changes) -> PickRecord:
        return PickRecord(**{"command": "pick", "models": model, "threshold": 0.25, "diameter_px": 40.0,
                             "micrographs": 3, "shard": shard, "listed": 9, **changes})

    write_pick_record(tmp_path, record((2, 3)))
    assert read_pick_record(tmp_path) == record((2, 3))
    merged = check_shards({Path(f"s{k}"): record((k, 3)) for k in (3, 1, 2)})
    assert (merged.command, merged.shard, merged.micrographs, merged.listed) == ("merge", None, 9, 9)
    with pytest.raises(CryoUNetError, match="shards 2/3, 3/3 missing"):
        check_shards({Path("s1"): record((1, 3))})
    with pytest.raises(CryoUNetError, match="different splits"):
        check_shards({Path("s1"): record((1, 3)), Path("s2"): record((2, 3), listed=10)})
    with pytest.raises(CryoUNetError, match="a shard cannot merge with a whole list"):
        check_shards({Path("s1"): record((1, 2)), Path("w"): record(None)})
    with pytest.raises(CryoUNetError, match="not picked alike: diameter 40.0 and 30.0"):
        check_shards({Path("s1"): record((1, 2)), Path("s2"): record((2, 2), diameter_px=30.0)})
    assert check_shards({Path("w1"): record(None), Path("w2"): record(None)}).micrographs == 6
    (tmp_path / RECORD_NAME).write_text('{"format": "cryounet-picks", "shard": "x/3"}')
    with pytest.raises(InputFileError, match="pick.json: not a readable pick record"):
        read_pick_record(tmp_path)


def test_resume_refuses_a_folder_another_threshold_started(tmp_path: Path) -> None:
    mics, _ = _micrographs(tmp_path / "mics", n=2)
    out = tmp_path / "picks"
    pick_micrographs(_picker(), mics[:1], out, 0.3, progress=False)
    with pytest.raises(CryoUNetError, match="threshold differ"):
        pick_micrographs(_picker(), mics, out, 0.6, progress=False, resume=True)
    summary = pick_micrographs(_picker(), mics, out, 0.3, progress=False, resume=True)
    assert set(summary.picked) == {"good_0", "good_1"}
