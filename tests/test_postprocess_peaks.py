"""Peak finding, non-maximum suppression and pick filters (cryounet.postprocess.peaks, cryounet.postprocess.filters)."""
from __future__ import annotations

import numpy as np
import pytest

from engine_helpers import gaussian_blobs

from cryounet.io.coordinates import Picks
from cryounet.postprocess.filters import FilterConfig, filter_picks
from cryounet.postprocess.peaks import disk_footprint, find_peaks, find_separated_peaks, nms, saddle_nms, valleys


# ------------------------------------------------------------------------------------ helpers
def test_disk_footprint() -> None:
    fp = disk_footprint(3.0)
    assert fp.shape == (7, 7) and fp.dtype == bool
    assert fp.sum() == 29  # lattice points within radius 3
    assert fp[3, 3] and fp[0, 3] and not fp[0, 0]
    np.testing.assert_array_equal(fp, fp.T)
    assert disk_footprint(0.0).shape == (3, 3)  # at least the 3 x 3 neighbourhood


# ---------------------------------------------------------------------------------------- NMS
def test_nms_greedy_order_and_distance() -> None:
    # A (best) at 0, B at 4, C at 8 on a line; distance 5: A suppresses B, and C survives because
    # only kept picks suppress (greedy), although C is within 5 of B.
    xy = np.array([[4.0, 0.0], [0.0, 0.0], [8.0, 0.0], [30.0, 0.0]])
    scores = np.array([0.8, 0.9, 0.7, 0.95])
    keep = nms(xy, scores, 5.0)
    assert keep.tolist() == [3, 1, 2]  # best score first


def test_nms_distance_is_strict() -> None:
    xy = np.array([[0.0, 0.0], [3.0, 4.0]])  # exactly 5 apart
    assert nms(xy, np.array([0.9, 0.8]), 5.0).tolist() == [0, 1]
    assert nms(xy, np.array([0.9, 0.8]), 5.001).tolist() == [0]


def test_nms_without_distance_only_sorts() -> None:
    xy = np.zeros((3, 2))
    assert nms(xy, np.array([0.1, 0.3, 0.2]), 0.0).tolist() == [1, 2, 0]
    assert nms(np.zeros((0, 2)), np.zeros(0), 5.0).tolist() == []


# ---------------------------------------------------------------------------------- find_peaks
def test_find_peaks_on_gaussian_blobs_sub_pixel() -> None:
    true = np.array([[20.3, 15.7], [50.0, 40.0], [70.6, 12.2], [12.45, 60.35]])
    amplitudes = np.array([0.9, 0.8, 0.7, 0.6])
    prob = gaussian_blobs((80, 90), true, 1.0, amplitudes).astype(np.float32)
    xy, scores = find_peaks(prob, 8.0, 0.1)
    assert len(xy) == 4
    order = [int(np.argmin(np.linalg.norm(true - p, axis=1))) for p in xy]
    assert order == [0, 1, 2, 3]  # best first (amplitude order)
    err = np.abs(xy - true[order])
    integer_err = np.abs(np.round(true) - true)[order]
    assert err.max() < 0.25  # sub-pixel
    # The refinement moves each off-grid coordinate towards the truth.
    off_grid = integer_err > 0.1
    assert np.all(err[off_grid] < integer_err[off_grid])
    assert np.allclose(xy[1], [50.0, 40.0], atol=1e-6)  # an on-grid blob stays exact
    # Scores are the map values at the integer peaks.
    for (x, y), s in zip(np.round(true[order]).astype(int), scores):
        assert s == pytest.approx(prob[y, x])


def test_find_peaks_min_distance() -> None:
    true = np.array([[30.0, 30.0], [36.0, 30.0]])  # 6 px apart
    prob = gaussian_blobs((60, 60), true, 1.0, [0.9, 0.8]).astype(np.float32)
    xy, scores = find_peaks(prob, 10.0, 0.1)
    assert len(xy) == 1 and np.allclose(xy[0], [30, 30], atol=0.3)
    assert scores[0] == pytest.approx(0.9, abs=0.01)
    xy, scores = find_peaks(prob, 4.0, 0.1)
    assert len(xy) == 2
    assert np.linalg.norm(xy[0] - xy[1]) >= 4.0


def test_find_peaks_min_score_and_empty() -> None:
    prob = gaussian_blobs((40, 40), np.array([[10.0, 10.0], [30.0, 30.0]]), 1.5, [0.9, 0.3])
    xy, scores = find_peaks(prob.astype(np.float32), 6.0, 0.5)
    assert len(xy) == 1 and np.allclose(xy[0], [10, 10], atol=1e-6)
    xy, scores = find_peaks(np.zeros((20, 20), np.float32), 6.0, 0.05)
    assert xy.shape == (0, 2) and scores.shape == (0,)


def test_find_peaks_at_the_border_stays_inside() -> None:
    prob = gaussian_blobs((30, 40), np.array([[0.0, 0.0], [39.0, 29.0]]), 1.0).astype(np.float32)
    xy, _ = find_peaks(prob, 6.0, 0.5)
    assert len(xy) == 2
    assert xy.min() >= 0 and xy[:, 0].max() <= 39 and xy[:, 1].max() <= 29
    # (The 3 x 3 centroid is pulled up to ~0.4 px inwards at the border: the window is cut there.)
    np.testing.assert_allclose(sorted(xy.tolist()), [[0, 0], [39, 29]], atol=0.5)


# -------------------------------------------------------------------------------- filter_picks
def _picks() -> Picks:
    xy = np.array([[50, 50], [52, 50], [5, 50], [95, 50], [50, 2], [70, 70]], dtype=float)
    return Picks(xy, np.array([0.9, 0.95, 0.8, 0.6, 0.7, 0.3]))


def test_filter_threshold_sorts_best_first() -> None:
    out = filter_picks(_picks(), None, FilterConfig(threshold=0.7))
    np.testing.assert_allclose(out.scores, [0.95, 0.9, 0.8, 0.7])
    assert out.xy[0].tolist() == [52, 50]


def test_filter_edge() -> None:
    # 100 x 100 micrograph (edges at -0.5 and 99.5): distance 5 keeps 4.5 <= x <= 94.5.
    out = filter_picks(_picks(), (100, 100), FilterConfig(edge_distance=5.0))
    assert sorted(map(tuple, out.xy.tolist())) == [(5, 50), (50, 50), (52, 50), (70, 70)]
    out = filter_picks(_picks(), (100, 100), FilterConfig(edge_distance=5.6))
    assert (5.0, 50.0) not in map(tuple, out.xy.tolist())
    with pytest.raises(ValueError, match="shape"):
        filter_picks(_picks(), None, FilterConfig(edge_distance=5.0))


def test_filter_nms_and_max_count() -> None:
    out = filter_picks(_picks(), None, FilterConfig(nms_distance=10.0))
    assert len(out) == 5 and out.xy[0].tolist() == [52, 50]  # [50, 50] suppressed by the better
    out = filter_picks(_picks(), None, FilterConfig(max_particles=2))
    np.testing.assert_allclose(out.scores, [0.95, 0.9])
    out = filter_picks(_picks(), (100, 100),
                       FilterConfig(threshold=0.5, nms_distance=10.0, edge_distance=5.0,
                                    max_particles=10))
    np.testing.assert_allclose(out.scores, [0.95, 0.8])


def test_filter_keeps_spread_and_handles_no_scores() -> None:
    picks = Picks(np.array([[1.0, 1.0], [2.0, 2.0]]), None, np.array([0.1, 0.2]))
    out = filter_picks(picks, None, FilterConfig(threshold=0.5, max_particles=1))
    assert len(out) == 1 and out.scores is None
    np.testing.assert_allclose(out.uncertainty, [0.1])
    assert len(filter_picks(Picks(np.zeros((0, 2))), (10, 10), FilterConfig(edge_distance=1.0))) == 0


# ---------------------------------------------------------------------------- map clean-up
def test_clean_probability_opening_and_component_areas() -> None:
    from cryounet.postprocess.peaks import clean_probability

    yy, xx = np.mgrid[0:80, 0:80]
    prob = np.zeros((80, 80), np.float32)
    prob[np.hypot(xx - 20, yy - 20) <= 5] = 0.9  # a particle-sized disk (diameter 10)
    prob[60, 5:75] = 0.9  # a 1-pixel line
    prob[np.hypot(xx - 60, yy - 20) <= 1.5] = 0.8  # a speck
    untouched = prob.copy()
    assert clean_probability(prob, 10.0).tolist() == prob.tolist()  # nothing asked: unchanged
    opened = clean_probability(prob, 10.0, opening_radius=0.2)
    assert opened[20, 20] == pytest.approx(0.9) and opened[60, 40] == 0.0 and opened[20, 60] == 0.0
    # Areas in particle-disk units (pi * 5^2 ~ 78.5 px): the speck (~9 px) is below 0.5 disks,
    # the disk (~81 px) is about 1, the line (70 px) about 0.9.
    small = clean_probability(prob, 10.0, min_area=0.5)
    assert small[20, 60] == 0.0 and small[20, 20] == pytest.approx(0.9) and small[60, 40] > 0
    large = clean_probability(prob, 10.0, max_area=0.95)
    assert large[20, 20] == 0.0 and large[20, 60] > 0 and large[60, 40] > 0
    np.testing.assert_array_equal(prob, untouched)  # the input map is not modified


def _disk(shape, centre, radius, value) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.where(np.hypot(xx - centre[0], yy - centre[1]) <= radius, value, 0.0).astype(np.float32)


@pytest.mark.parametrize("diameter", [8.0, 12.0, 20.0])
def test_opening_removes_a_thin_line_and_keeps_a_particle_disk(diameter: float) -> None:
    from cryounet.postprocess.peaks import clean_probability

    prob = _disk((100, 100), (30, 30), diameter / 2, 0.9)
    prob[80, 5:95] = 0.8  # 1 px wide, much longer than a particle
    prob[5:95, 70] = 0.7
    opened = clean_probability(prob, diameter, opening_radius=0.25)
    assert opened[80, 5:95].max() == 0.0 and opened[5:95, 70][prob[5:95, 70] == 0.7].max() == 0.0
    # The disk's interior survives (an opening only removes what the structuring disk cannot
    # fit in), and nothing grows: opening is anti-extensive.
    inner = _disk((100, 100), (30, 30), diameter / 4, 1.0) > 0
    np.testing.assert_allclose(opened[inner], 0.9)
    assert (opened <= prob + 1e-7).all()


def test_component_filter_keeps_only_areas_in_range() -> None:
    from cryounet.postprocess.peaks import clean_probability

    d = 10.0  # particle disk area ~ 78.5 px
    prob = (_disk((120, 120), (20, 20), 2, 0.9)        # ~13 px: 0.17 particle areas
            + _disk((120, 120), (60, 20), 5, 0.9)      # ~81 px: ~1 particle area
            + _disk((120, 120), (60, 80), 12, 0.9))    # ~450 px: ~5.8 particle areas
    kept = clean_probability(prob, d, min_area=0.5, max_area=3.0)
    assert kept[20, 20] == 0.0 and kept[80, 60] == 0.0
    np.testing.assert_array_equal(kept[0:40, 40:80], prob[0:40, 40:80])  # the middle one, intact
    # Each bound alone.
    assert clean_probability(prob, d, min_area=0.5)[80, 60] == pytest.approx(0.9)
    assert clean_probability(prob, d, min_area=0.5)[20, 20] == 0.0
    assert clean_probability(prob, d, max_area=3.0)[20, 20] == pytest.approx(0.9)
    assert clean_probability(prob, d, max_area=3.0)[80, 60] == 0.0
    # Areas are in particle areas: for a 30 px particle (~707 px) the big blob is ~0.64 of one.
    assert clean_probability(prob, 30.0, min_area=0.7)[80, 60] == 0.0
    assert clean_probability(prob, 30.0, min_area=0.6)[80, 60] == pytest.approx(0.9)


def test_component_level_defines_the_regions() -> None:
    from cryounet.postprocess.peaks import clean_probability

    prob = _disk((60, 60), (20, 20), 2, 0.4) + _disk((60, 60), (45, 45), 2, 0.8)
    # At level 0.5 the 0.4 speck is no region (left alone); the 0.8 speck is removed.
    out = clean_probability(prob, 10.0, min_area=0.5, level=0.5)
    assert out[20, 20] == pytest.approx(0.4) and out[45, 45] == 0.0
    # At level 0.3 both are small regions.
    out = clean_probability(prob, 10.0, min_area=0.5, level=0.3)
    assert out.max() == 0.0
    # Above every value: no region, nothing removed.
    np.testing.assert_array_equal(clean_probability(prob, 10.0, min_area=0.5, level=0.95), prob)


# ------------------------------------------------------------- touching particles (saddle NMS)
def _two_blobs(gap: float, sigma: float, amplitudes=(0.9, 0.8), size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs ``gap`` px apart on a horizontal line, as a float32 map, and their centres."""
    centres = np.array([[20.0, 24.0], [20.0 + gap, 24.0]])
    return gaussian_blobs((size, size), centres, sigma, amplitudes).astype(np.float32), centres


def test_saddle_nms_separates_touching_blobs_that_plain_nms_merges() -> None:
    # Diameter 16 (the working diameter): blobs 5 px apart (0.31 d) with a deep valley between.
    prob, centres = _two_blobs(5.0, 1.2)
    merged, _ = find_peaks(prob, 0.4 * 16, 0.1)
    assert len(merged) == 1
    xy, scores = find_separated_peaks(prob, 0.15 * 16, 0.1, 0.4 * 16, 0.8)
    assert len(xy) == 2
    np.testing.assert_allclose(xy, centres, atol=0.3)
    assert scores[0] > scores[1]  # best first


def test_saddle_nms_keeps_one_pick_on_a_blob_without_a_dip() -> None:
    # Two wide blobs 5 px apart melt into one ridge whose two maxima (0.98, 0.97) are separated
    # by a dip to 0.94 only: one particle.
    prob, _ = _two_blobs(5.0, 2.2, (0.9, 0.88))
    plain, _ = find_peaks(prob, 0.15 * 16, 0.1)
    assert len(plain) == 2  # plain NMS at the small radius keeps both maxima
    xy, _ = find_separated_peaks(prob, 0.15 * 16, 0.1, 0.4 * 16, 0.8)
    assert len(xy) == 1


def test_saddle_ratio_sets_how_deep_the_valley_must_be() -> None:
    prob, _ = _two_blobs(5.0, 1.6)
    xy, heights = find_peaks(prob, 2.0, 0.1)
    ratio = float(valleys(prob, xy[:1], xy[1:], 41)[0]) / heights.min()
    assert 0.4 < ratio < 0.8  # the valley between the two peaks, relative to the lower one
    assert len(find_separated_peaks(prob, 2.0, 0.1, 8.0, ratio + 0.05)[0]) == 2  # dip deep enough
    assert len(find_separated_peaks(prob, 2.0, 0.1, 8.0, ratio - 0.05)[0]) == 1  # not deep enough


def test_saddle_nms_never_keeps_peaks_closer_than_the_nms_distance() -> None:
    prob, _ = _two_blobs(5.0, 1.0)
    assert len(find_separated_peaks(prob, 2.0, 0.1, 8.0, 0.8)[0]) == 2
    assert len(find_separated_peaks(prob, 5.5, 0.1, 8.0, 0.8)[0]) == 1  # the hard floor wins


def test_saddle_nms_leaves_distant_peaks_alone() -> None:
    prob, _ = _two_blobs(12.0, 4.0)  # wide blobs whose valley hardly dips, but 12 px apart
    xy, _ = find_separated_peaks(prob, 2.0, 0.1, 8.0, 0.1)  # even a ratio that merges almost all
    assert len(xy) == 2


@pytest.mark.parametrize("ratio, saddle", [(0.0, 8.0), (0.8, 2.0), (0.8, 1.0)])
def test_without_the_saddle_test_peaks_are_those_of_find_peaks(ratio: float, saddle: float) -> None:
    prob = gaussian_blobs((60, 60), np.array([[10.0, 10.0], [15.0, 11.0], [40.0, 40.0], [43.0, 44.0]]), 1.5,
                          [0.9, 0.7, 0.8, 0.85]).astype(np.float32)
    xy, scores = find_separated_peaks(prob, 2.0, 0.05, saddle, ratio)
    ref_xy, ref_scores = find_peaks(prob, 2.0, 0.05)
    np.testing.assert_array_equal(xy, ref_xy)
    np.testing.assert_array_equal(scores, ref_scores)


def test_saddle_nms_edge_cases() -> None:
    # Empty map, one pixel, a single pick, no pairs.
    xy, scores = find_separated_peaks(np.zeros((20, 20), np.float32), 2.0, 0.05, 8.0, 0.8)
    assert xy.shape == (0, 2) and scores.shape == (0,)
    xy, scores = find_separated_peaks(np.full((1, 1), 0.7, np.float32), 2.0, 0.05, 8.0, 0.8)
    np.testing.assert_allclose(xy, [[0.0, 0.0]])
    np.testing.assert_allclose(scores, [0.7])
    assert saddle_nms(np.zeros((0, 2)), np.zeros(0), np.zeros((4, 4)), 2.0, 8.0, 0.8).tolist() == []
    assert saddle_nms(np.array([[1.0, 1.0]]), np.array([0.5]), np.zeros((4, 4)), 2.0, 8.0, 0.8).tolist() == [0]


def test_a_flat_map_is_one_plateau() -> None:
    # Every pixel of a flat map is a maximum and no two have a valley between them: the picks are
    # those of plain NMS at the saddle distance, all with the same score.
    flat = np.full((30, 40), 0.6, np.float32)
    xy, scores = find_separated_peaks(flat, 2.0, 0.05, 8.0, 0.8)
    ref_xy, _ = find_peaks(flat, 8.0, 0.05)
    np.testing.assert_array_equal(xy, ref_xy)
    np.testing.assert_allclose(scores, 0.6)
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    assert gaps[np.triu_indices(len(xy), 1)].min() >= 8.0 - 1e-6


def test_valleys_samples_the_segment() -> None:
    prob = np.zeros((5, 9), np.float32)
    prob[2, :] = [1.0, 0.9, 0.8, 0.3, 0.2, 0.3, 0.8, 0.9, 1.0]
    low = valleys(prob, np.array([[0.0, 2.0], [0.0, 2.0]]), np.array([[8.0, 2.0], [2.0, 2.0]]), 17)
    np.testing.assert_allclose(low, [0.2, 0.8], atol=1e-6)


def test_candidate_peaks_saddle_options_scale_with_the_diameter() -> None:
    from cryounet.config import PickConfig
    from cryounet.postprocess.peaks import candidate_peaks

    # Diameter 16, as above; at diameter 32 the same map's peaks are 0.16 d apart, inside the
    # nms_radius of 0.2 d: one pick.
    prob, _ = _two_blobs(5.0, 1.2)
    pick = PickConfig(edge_exclusion=0.0, nms_radius=0.15, saddle_radius=0.4, saddle_ratio=0.8)
    assert len(candidate_peaks(prob, 16.0, pick, 0.1)[0]) == 2
    assert len(candidate_peaks(prob, 32.0, PickConfig(edge_exclusion=0.0, nms_radius=0.2, saddle_radius=0.4,
                                                      saddle_ratio=0.8), 0.1)[0]) == 1



def test_the_default_separates_and_older_models_pick_as_before() -> None:
    from cryounet.config import CryoUNetConfig, PickConfig
    from cryounet.postprocess.peaks import candidate_peaks

    prob, _ = _two_blobs(5.0, 1.2)
    default = PickConfig(edge_exclusion=0.0)
    assert (default.nms_radius, default.saddle_radius, default.saddle_ratio) == (0.15, 0.4, 0.8)
    assert len(candidate_peaks(prob, 16.0, default, 0.1)[0]) == 2
    # A model folder written before the saddle options stores nms_radius 0.4 and no saddle keys:
    # with saddle_radius 0.4 the test never acts, so its picks are plain NMS at 0.4, as before.
    old = CryoUNetConfig.from_dict({"pick": {"nms_radius": 0.4, "edge_exclusion": 0.0}}).pick
    xy, scores = candidate_peaks(prob, 16.0, old, 0.1)
    ref_xy, ref_scores = find_peaks(prob, 6.4, 0.1)
    np.testing.assert_array_equal(xy, ref_xy)
    np.testing.assert_array_equal(scores, ref_scores)
    assert len(xy) == 1


@pytest.mark.parametrize("pick, message", [
    ({"saddle_ratio": -0.1}, "pick.saddle_ratio must be between 0 and 1"),
    ({"saddle_ratio": 1.5}, "pick.saddle_ratio must be between 0 and 1"),
    ({"saddle_radius": -0.1}, "pick.saddle_radius must not be negative"),
    ({"saddle_radius": float("nan")}, "pick.saddle_radius must be a finite number"),
])
def test_saddle_options_are_validated(pick: dict, message: str) -> None:
    from cryounet.config import CryoUNetConfig
    from cryounet.errors import CryoUNetError

    with pytest.raises(CryoUNetError, match=message.replace(".", "[.]")):
        CryoUNetConfig().updated({"pick": pick})
    for good in ({"saddle_ratio": 0.0}, {"saddle_ratio": 1.0}, {"saddle_radius": 0.0}):
        CryoUNetConfig().updated({"pick": good})
