"""Training targets from picks (cryounet.training.targets)."""
from __future__ import annotations

import numpy as np
import pytest

from cryounet.config import CROWDED_SHARE, TargetConfig
from cryounet.errors import CryoUNetError
from cryounet.training.targets import (crowded_share, decide_separation, describe_negatives,
                                      make_targets, resolve_separation, separation_border)

D = 20.0  # diameter: core radius 0.2 * 20 = 4 px, ignore radius 0.4 * 20 = 8 px


def _dist(shape, x, y):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.hypot(xx - x, yy - y)


def test_positive_core_ignore_band_and_negatives() -> None:
    shape = (60, 80)
    target, weight = make_targets(shape, np.array([[30.0, 25.0]]), D, TargetConfig())
    assert target.dtype == weight.dtype == np.float32 and target.shape == weight.shape == shape
    dist = _dist(shape, 30.0, 25.0)
    core, band, far = dist <= 4, (dist > 4) & (dist <= 8), dist > 8
    np.testing.assert_array_equal(target[core], 1.0)
    np.testing.assert_array_equal(target[~core], 0.0)
    assert core.sum() == 49  # lattice points within radius 4
    np.testing.assert_array_equal(weight[core], 1.0)
    np.testing.assert_array_equal(weight[band], 0.0)
    np.testing.assert_array_equal(weight[far], 1.0)


def test_sub_pixel_pick_centre() -> None:
    shape = (40, 40)
    target, _ = make_targets(shape, np.array([[10.5, 20.25]]), D, TargetConfig())
    np.testing.assert_array_equal(target > 0.5, _dist(shape, 10.5, 20.25) <= 4)


def test_unlabelled_weight() -> None:
    cfg = TargetConfig(unlabelled_weight=0.3)
    target, weight = make_targets((50, 50), np.array([[25.0, 25.0]]), D, cfg)
    dist = _dist((50, 50), 25, 25)
    np.testing.assert_allclose(weight[dist > 8], 0.3)
    np.testing.assert_array_equal(weight[dist <= 4], 1.0)  # positives always count fully
    np.testing.assert_array_equal(weight[(dist > 4) & (dist <= 8)], 0.0)


def test_background_override() -> None:
    shape = (40, 50)
    background = np.random.default_rng(0).random(shape).astype(np.float32)
    background_copy = background.copy()
    target, weight = make_targets(shape, np.array([[20.0, 20.0]]), D,
                                  TargetConfig(unlabelled_weight=0.1), background=background)
    dist = _dist(shape, 20, 20)
    np.testing.assert_array_equal(weight[dist > 8], background[dist > 8])
    np.testing.assert_array_equal(weight[(dist > 4) & (dist <= 8)], 0.0)
    np.testing.assert_array_equal(weight[dist <= 4], 1.0)
    np.testing.assert_array_equal(background, background_copy)  # the input is not modified
    with pytest.raises(ValueError, match="background weights of shape"):
        make_targets(shape, np.zeros((0, 2)), D, TargetConfig(), background=np.ones((5, 5)))


def test_picks_at_edges_and_outside() -> None:
    shape = (30, 40)
    xy = np.array([[0.0, 0.0], [39.0, 29.0], [-0.4, 15.0], [-100.0, -100.0], [500.0, 10.0]])
    target, weight = make_targets(shape, xy, D, TargetConfig())
    assert target[0, 0] == 1.0 and target[29, 39] == 1.0 and target[15, 0] == 1.0
    expected = np.zeros(shape, dtype=bool)
    for x, y in xy[:3]:
        expected |= _dist(shape, x, y) <= 4
    np.testing.assert_array_equal(target > 0.5, expected)  # far-outside picks add nothing


def test_no_picks_all_negative() -> None:
    target, weight = make_targets((16, 16), np.zeros((0, 2)), D, TargetConfig(unlabelled_weight=0.5))
    assert target.max() == 0.0
    np.testing.assert_allclose(weight, 0.5)


def test_core_of_neighbour_inside_ignore_band_counts() -> None:
    # Two picks 6 px apart: each core lies inside the other's ignore band but keeps weight 1.
    target, weight = make_targets((40, 40), np.array([[17.0, 20.0], [23.0, 20.0]]), D, TargetConfig())
    assert target[20, 17] == target[20, 23] == 1.0
    np.testing.assert_array_equal(weight[target >= 0.5], 1.0)
    assert weight[20, 20] == 1.0 and target[20, 20] == 1.0  # 3 px from both centres
    assert weight[20, 29] == 0.0  # 6 px from the right pick: band


def test_gaussian_targets() -> None:
    # sigma = 0.1 * 20 = 2 px; ignore band out to 8 px.
    cfg = TargetConfig(shape="gaussian", positive_radius=0.1, ignore_radius=0.4)
    target, weight = make_targets((60, 60), np.array([[30.0, 30.0]]), D, cfg)
    assert target[30, 30] == pytest.approx(1.0)
    assert target[30, 32] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma away
    assert target[30, 34] == pytest.approx(np.exp(-2.0), rel=1e-5)
    assert weight[30, 34] == 1.0  # a clear soft target (> 0.05) counts
    assert weight[30, 36] == 0.0  # 6 px: target exp(-4.5) = 0.011, inside the band: ignored
    assert weight[30, 39] == 1.0 and target[30, 39] < 1e-4  # beyond the band: negative
    assert 0.0 <= target.min() and target.max() <= 1.0


def test_separation_border_between_touching_picks() -> None:
    # Two picks 12 px apart (0.6 diameters): the border runs along the bisector x = 20, within
    # 8 px of both centres; width 0.1 * 20 = 2 px takes |d2 - d1| <= 2, i.e. x = 19-21 on row 20.
    xy = np.array([[14.0, 20.0], [26.0, 20.0]])
    cfg = TargetConfig(separation="on", separation_weight=2.0)
    border = separation_border((40, 40), xy, D, cfg)
    d1, d2 = _dist((40, 40), 14, 20), _dist((40, 40), 26, 20)
    expected = (np.abs(d2 - d1) <= 2) & (np.maximum(d1, d2) <= 8) & (np.minimum(d1, d2) > 4)
    np.testing.assert_array_equal(border, expected)
    assert border[20, 19] and border[20, 20] and border[20, 21] and not border[20, 18]
    assert border[15, 20] and not border[14, 20]  # 7.8 and 8.5 px from both centres
    target, weight = make_targets((40, 40), xy, D, cfg)
    plain_target, plain_weight = make_targets((40, 40), xy, D, TargetConfig(separation="off"))
    np.testing.assert_array_equal(target, plain_target)  # the border lies outside every core
    np.testing.assert_array_equal(weight[border], 2.0)  # ignored before, negatives now
    assert (plain_weight[border] == 0).all()
    np.testing.assert_array_equal(weight[~border], plain_weight[~border])


def test_separation_border_spares_cores_and_lone_picks() -> None:
    cfg = TargetConfig(separation="on")
    # Picks 6 px apart: the bisector lies inside both cores (3 px < 4 px), so it stays positive.
    xy = np.array([[17.0, 20.0], [23.0, 20.0]])
    target, weight = make_targets((40, 40), xy, D, cfg)
    assert target[20, 20] == 1.0 and weight[20, 20] == 1.0
    assert not separation_border((40, 40), xy, D, cfg)[20, 20]
    # Picks farther apart than two ignore radii, or a single pick: no border at all.
    assert not separation_border((40, 60), np.array([[10.0, 20.0], [40.0, 20.0]]), D, cfg).any()
    assert not separation_border((40, 40), np.array([[20.0, 20.0]]), D, cfg).any()
    assert not separation_border((40, 40), np.zeros((0, 2)), D, cfg).any()
    # A zero weight or "off": the ignore band stays ignored.
    for off in (TargetConfig(separation="off"), TargetConfig(separation="on", separation_weight=0.0)):
        assert make_targets((40, 40), np.array([[14.0, 20.0], [26.0, 20.0]]), D, off)[1][20, 20] == 0.0


def _row(n: int, gap: float) -> np.ndarray:
    return np.stack([10.0 + gap * np.arange(n), np.full(n, 30.0)], axis=1)


def test_crowded_share_and_auto_separation() -> None:
    # 2 x ignore radius = 0.8 diameters = 16 px: picks 12 px apart are crowded, 30 px apart are not.
    crowded, sparse = (_row(4, 12.0), D), (_row(4, 30.0), D)
    assert crowded_share([crowded], 0.8) == (1.0, 4)
    assert crowded_share([sparse], 0.8) == (0.0, 4)
    assert crowded_share([crowded, sparse], 0.8) == (0.5, 8)  # pooled over micrographs
    assert crowded_share([(np.zeros((0, 2)), D), (_row(1, 0.0), D)], 0.8) == (0.0, 1)
    # Neighbours are looked for within one micrograph only.
    assert crowded_share([(_row(1, 0.0), D), (_row(1, 0.0), D)], 0.8) == (0.0, 2)
    auto = TargetConfig()
    assert auto.separation == "auto"
    assert resolve_separation(auto, [crowded]).separation == "on"
    assert resolve_separation(auto, [sparse]).separation == "off"
    # The share decides at CROWDED_SHARE: 1 crowded pair among n picks.
    n_at = int(round(2 / CROWDED_SHARE))
    at = [(_row(2, 12.0), D), (_row(n_at - 2, 30.0) + [0.0, 50.0], D)]
    assert crowded_share(at, 0.8)[0] == CROWDED_SHARE
    assert resolve_separation(auto, at).separation == "on"
    below = [(_row(2, 12.0), D), (_row(n_at - 1, 30.0) + [0.0, 50.0], D)]
    assert resolve_separation(auto, below).separation == "off"
    for fixed in ("on", "off"):  # only auto is decided
        assert resolve_separation(TargetConfig(separation=fixed), [sparse if fixed == "on" else crowded]
                                  ).separation == fixed
    # The distance follows the ignore radius: with 0.2 (0.4 diameters = 8 px) 12 px is not crowded.
    narrow = TargetConfig(ignore_radius=0.2)
    assert resolve_separation(narrow, [crowded]).separation == "off"
    assert "on (auto: 100 % of the 4 picks have a neighbour closer than 0.8 diameters)" in \
        decide_separation(auto, [crowded])[1]
    assert "off (0 % of the 4 picks" in decide_separation(TargetConfig(separation="off"), [sparse])[1]
    for cfg, picks in ((auto, [crowded]), (auto, [sparse]), (auto, at), (auto, below), (narrow, [crowded]),
                       (TargetConfig(separation="on"), [sparse])):  # the same decision as resolve_separation
        assert decide_separation(cfg, picks)[0] == resolve_separation(cfg, picks)


def test_auto_separation_in_make_targets_decides_on_its_picks() -> None:
    xy = np.array([[14.0, 20.0], [26.0, 20.0]])
    auto = make_targets((40, 40), xy, D, TargetConfig())
    on = make_targets((40, 40), xy, D, TargetConfig(separation="on"))
    np.testing.assert_array_equal(auto[1], on[1])
    far = np.array([[10.0, 20.0], [40.0, 20.0]])
    np.testing.assert_array_equal(make_targets((40, 60), far, D, TargetConfig())[1],
                                  make_targets((40, 60), far, D, TargetConfig(separation="off"))[1])


def test_invalid_settings() -> None:
    with pytest.raises(CryoUNetError, match="positive_radius"):
        make_targets((10, 10), np.zeros((0, 2)), D,
                     TargetConfig(positive_radius=0.5, ignore_radius=0.4))
    with pytest.raises(CryoUNetError, match="positive_radius"):
        make_targets((10, 10), np.zeros((0, 2)), D, TargetConfig(positive_radius=0.0))
    with pytest.raises(CryoUNetError, match="unknown target shape 'box'"):
        make_targets((10, 10), np.array([[5.0, 5.0]]), D, TargetConfig(shape="box"))


@pytest.mark.parametrize("weight, words", [(1.0, "full weight"), (0.0, "ignored"),
                                           (0.3, "weight 0.3")])
def test_describe_negatives(weight: float, words: str) -> None:
    assert words in describe_negatives(TargetConfig(unlabelled_weight=weight))
