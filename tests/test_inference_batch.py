"""Picking lists of micrographs and writing STAR files (cryounet.inference.batch, cryounet.io.picks_folder)."""
from __future__ import annotations

import logging
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
from cryounet.io.picks_folder import warn_if_empty, write_picks


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
                                                     "skipped.json"]
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
