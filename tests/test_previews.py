"""PNG previews of picks on micrographs (cryounet.previews, ``cryounet show``)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from cryounet.io.coordinates import Picks, write_star_picks
from cryounet.io.mrc import write_mrc
from cryounet.previews import write_pick_previews


def test_previews_of_the_first_micrographs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mics = []
    for name in ("a", "b", "c"):
        mics.append(tmp_path / f"{name}.mrc")
        write_mrc(mics[-1], np.random.default_rng(0).normal(size=(96, 128)).astype(np.float32))
    picks = tmp_path / "picks"
    picks.mkdir()
    write_star_picks(picks / "a.star", Picks([[30, 40], [90, 50]], [0.3, 0.8]))
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.WARNING, logger="cryounet"):
        written = write_pick_previews(mics, picks, 20.0, out, count=2)
    assert written == [out / "a_picks.png", out / "b_picks.png"]
    assert all(p.stat().st_size > 5000 for p in written)
    assert any("b.mrc: no pick file" in r.getMessage() for r in caplog.records)


def test_the_diameter_comes_from_the_pick_record_unless_given(tmp_path: Path) -> None:
    from cryounet.errors import CryoUNetError
    from cryounet.io.picks_folder import PickRecord, write_pick_record
    from cryounet.previews import picks_diameter

    with pytest.raises(CryoUNetError, match="give --diameter"):
        picks_diameter(tmp_path, None)
    write_pick_record(tmp_path, PickRecord("pick", [], 0.4, 56.0, 3))
    assert picks_diameter(tmp_path, None) == 56.0
    assert picks_diameter(tmp_path, 40.0) == 40.0
