"""``pick --threshold`` with a label-free rule (cryounet.inference.label_free)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryounet.errors import CryoUNetError
from cryounet.inference.label_free import CANDIDATE_FLOOR, cut_at_rule, picking_threshold_option
from cryounet.io.coordinates import Picks, read_coordinates
from cryounet.io.picks_folder import PickRecord, read_pick_record, write_picks


def test_picking_threshold_option() -> None:
    assert picking_threshold_option("auto", None) == (None, None)
    assert picking_threshold_option("0.3", (1, 2)) == (0.3, None)
    assert picking_threshold_option(" Otsu", None) == (CANDIDATE_FLOOR, "otsu")
    with pytest.raises(CryoUNetError, match="a shard sees only its part"):
        picking_threshold_option("otsu", (2, 3))
    with pytest.raises(CryoUNetError, match="'auto' or a number"):
        picking_threshold_option("otsu2", None)


def test_cut_at_rule_rewrites_the_folder_and_its_record(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    results = []
    for i in range(2):
        z = np.concatenate([rng.normal(-4.5, 0.5, 200), rng.normal(0.0, 0.5, 40)])
        results.append((f"m{i}", f"/data/m{i}.mrc", Picks(rng.uniform(0, 900, (len(z), 2)), 1 / (1 + np.exp(-z)))))
    write_picks(tmp_path, results, PickRecord("pick", [], CANDIDATE_FLOOR, 40.0, 2))
    threshold, kept = cut_at_rule(tmp_path, "otsu", fallback=0.5)
    assert 1 / (1 + np.exp(3.5)) < threshold < 1 / (1 + np.exp(1.0))  # between the modes, clear of both
    assert set(kept) == {"m0", "m1"} and all(30 <= n <= 50 for n in kept.values())
    for stem, n in kept.items():
        picks = read_coordinates(tmp_path / f"{stem}.star")
        assert len(picks) == n and picks.scores.min() >= threshold
    record = read_pick_record(tmp_path)
    assert record.threshold == threshold and record.postprocess["threshold_rule"] == "otsu"


def test_cut_at_rule_with_too_few_candidates_cuts_at_the_fallback(tmp_path: Path, caplog) -> None:
    write_picks(tmp_path, [("m0", "m0.mrc", Picks([[10.0, 10.0], [50.0, 50.0], [90.0, 90.0]], [0.9, 0.4, 0.01])),
                           ("m1", "m1.mrc", Picks(np.zeros((0, 2)), np.zeros(0)))],
                PickRecord("pick", [], CANDIDATE_FLOOR, 40.0, 2))
    threshold, kept = cut_at_rule(tmp_path, "otsu", fallback=0.3)
    assert threshold == 0.3 and kept == {"m0": 2, "m1": 0}
    assert "only 3 candidate(s) above 0.0025: too few" in caplog.text and "own threshold, 0.300" in caplog.text
    record = read_pick_record(tmp_path)
    assert record.threshold == 0.3
    assert record.postprocess["threshold_rule"] == "otsu: too few candidates, the models' own"
