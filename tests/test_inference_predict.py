"""Tiled inference, test-time augmentation and ensembles (cryounet.inference.predict, cryounet.inference.picker)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from engine_helpers import AffineNet, gaussian_blobs, spots_micrograph
from engine_helpers import loaded_model as _loaded

from cryounet.config import CryoUNetConfig, ModelConfig, PickConfig
from cryounet.errors import CryoUNetError
from cryounet.inference.picker import Picker
from cryounet.inference.picking import peaks_to_picks
from cryounet.inference.predict import (_dihedral, _dihedral_inverse, forward_precision, predict_probability,
                                       tta_symmetries)
from cryounet.inference import predict as predict_module
from cryounet.models import build_model
from cryounet.preprocess import Scale, preprocess


def _random_net(depth: int = 2, architecture: str = "unet", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = build_model(ModelConfig(architecture=architecture, base_channels=4, depth=depth)).eval()
    # Make batch norm do something (running statistics other than 0/1).
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


def _image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------ tiling
def test_tiling_equals_whole_image_inference() -> None:
    net = _random_net(depth=2)
    image = _image((300, 260))
    whole = predict_probability(net, image, tile_size=1024, overlap=0)
    tiled = predict_probability(net, image, tile_size=128, overlap=96)
    assert np.abs(whole - tiled).max() < 1e-4


@pytest.mark.parametrize("architecture", ["unet", "attention_unet"])
def test_tiling_equals_whole_image_away_from_the_padded_border(architecture: str) -> None:
    net = _random_net(depth=2, architecture=architecture)
    image = _image((300, 260), seed=1)
    whole = predict_probability(net, image, tile_size=1024, overlap=0)
    tiled = predict_probability(net, image, tile_size=128, overlap=96, batch_size=3)
    assert whole.shape == tiled.shape == (300, 260) and tiled.dtype == np.float32
    # Every tile seam is in the compared region; only the last rows/columns (the receptive
    # field of the padded bottom/right border) are left out.
    assert np.abs(whole[:256, :216] - tiled[:256, :216]).max() < 1e-4


def test_tiling_equals_whole_image_when_tiles_fit_exactly() -> None:
    # 256 x 224 with tile 128 and step 32: the last tiles end exactly at the image border.
    net = _random_net(depth=2, seed=3)
    image = _image((256, 224), seed=2)
    whole = predict_probability(net, image, tile_size=1024, overlap=0)
    tiled = predict_probability(net, image, tile_size=128, overlap=96)
    assert np.abs(whole - tiled).max() < 1e-4


def test_tiles_with_small_overlap_differ_but_stay_close() -> None:
    # Sanity check that the tiled path really tiles: with no overlap the seams show.
    net = _random_net(depth=2, seed=4)
    image = _image((256, 224), seed=5)
    whole = predict_probability(net, image, tile_size=1024, overlap=0)
    seams = predict_probability(net, image, tile_size=64, overlap=0)
    assert np.abs(whole - seams).max() > 1e-3


def test_image_smaller_than_tile_in_one_dimension() -> None:
    net = _random_net(depth=2, seed=6)
    image = _image((60, 300), seed=7)
    whole = predict_probability(net, image, tile_size=1024, overlap=0)
    tiled = predict_probability(net, image, tile_size=128, overlap=96)
    assert tiled.shape == (60, 300)
    assert np.abs(whole[:, :256] - tiled[:, :256]).max() < 1e-4


def test_batch_size_does_not_change_the_result() -> None:
    net = _random_net(depth=2, seed=8)
    image = _image((200, 200), seed=9)
    a = predict_probability(net, image, tile_size=64, overlap=32, batch_size=1)
    b = predict_probability(net, image, tile_size=64, overlap=32, batch_size=7)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert (a > 0).all() and (a < 1).all()


# ----------------------------------------------------------------------------------------- TTA
@pytest.mark.parametrize("k", range(8))
def test_dihedral_inverse(k: int) -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    assert torch.equal(_dihedral_inverse(_dihedral(x, k), k), x)


def test_dihedral_gives_eight_distinct_symmetries() -> None:
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    images = {tuple(_dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8


@pytest.mark.parametrize("architecture", ["unet", "attention_unet"])
def test_tta_is_invariant_to_flipping_the_input(architecture: str) -> None:
    net = _random_net(depth=2, architecture=architecture, seed=10)
    image = _image((64, 48), seed=11)
    tta = predict_probability(net, image, tta=True)
    for transform in (lambda a: a[:, ::-1], lambda a: a[::-1, :], np.rot90, np.transpose):
        moved = predict_probability(net, np.ascontiguousarray(transform(image)), tta=True)
        np.testing.assert_allclose(moved, transform(tta), atol=1e-5)
    # Without TTA the random network is not invariant: TTA really averages.
    plain = predict_probability(net, image, tta=False)
    assert np.abs(plain - tta).max() > 1e-4


def test_tta_over_the_four_rotations_is_invariant_to_rotating_the_input_only() -> None:
    net = _random_net(depth=2, seed=20)
    image = _image((64, 48), seed=21)
    tta = predict_probability(net, image, tta=True, tta_symmetries=4)
    for k in (1, 2, 3):
        moved = predict_probability(net, np.ascontiguousarray(np.rot90(image, k)), tta=True, tta_symmetries=4)
        np.testing.assert_allclose(moved, np.rot90(tta, k), atol=1e-5)
    # Mirror images are not among the four: a flipped input gives another map, and all eight differ.
    flipped = predict_probability(net, np.ascontiguousarray(image[:, ::-1]), tta=True, tta_symmetries=4)
    assert np.abs(flipped - tta[:, ::-1]).max() > 1e-4
    assert np.abs(predict_probability(net, image, tta=True, tta_symmetries=8) - tta).max() > 1e-4


def test_tta_symmetry_counts() -> None:
    assert tta_symmetries(8) == tuple(range(8))
    assert tta_symmetries(4) == (0, 1, 2, 3)  # the rotations: no flip (indices 4-7 flip first)
    with pytest.raises(CryoUNetError, match="pick.tta_symmetries must be one of 4, 8, got 2"):
        tta_symmetries(2)
    with pytest.raises(CryoUNetError, match="pick.tta_symmetries must be one of 4, 8, got 6"):
        CryoUNetConfig().updated({"pick": {"tta_symmetries": 6}}).validate("test")
    with pytest.raises(CryoUNetError, match="pick.tta_symmetries: expected an integer, got True"):
        CryoUNetConfig().updated({"pick": {"tta_symmetries": True}}).validate("test")


def test_picker_averages_over_the_configured_symmetries_and_warns_on_other_calibrations(caplog) -> None:
    net = _random_net(depth=2, seed=22)
    image = _image((96, 96), seed=23)
    for count in (4, 8):
        model = _loaded(copy.deepcopy(net), diameter=16.0)
        model.info.config.pick.tta_symmetries = count  # calibrated as it picks
        picker = Picker([model], PickConfig(tta=True, tta_symmetries=count))
        np.testing.assert_allclose(picker.probability(image)[0],
                                   predict_probability(net, image, tta=True, tta_symmetries=count), atol=1e-5)
    assert "calibrated over" not in caplog.text
    old = _loaded(copy.deepcopy(net), diameter=16.0)
    old.info.config.pick.tta_symmetries = 8  # a model calibrated by CryoUNet 0.4.0
    with caplog.at_level("WARNING", logger="cryounet"):
        Picker([old], PickConfig(tta=True, tta_symmetries=4))
    assert "over 4 symmetries, but the TTA thresholds of these models were calibrated over 8" in caplog.text
    caplog.clear()
    Picker([old], PickConfig(tta=False, tta_symmetries=4))  # no TTA: nothing to warn about
    assert "calibrated over" not in caplog.text


class _CountingNet(nn.Module):
    """Wraps a network and records the batch shape of every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.multiple = getattr(net, "multiple", 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.net(x)


@pytest.mark.parametrize("shape, tile, square", [((64, 64), 512, True), ((72, 48), 512, False),
                                                 ((150, 110), 64, True)])  # the last: square tiles
@pytest.mark.parametrize("count", [4, 8])
def test_symmetries_together_give_the_map_of_symmetries_in_turn(shape, tile: int, square: bool,
                                                               count: int) -> None:
    """Square, oblong and tiled images: the copies that share a shape go through the network as one
    batch (one pass for a square, two for an oblong image), with the same map."""
    net = _CountingNet(_random_net(depth=2, seed=30))
    image = _image(shape, seed=31)
    in_turn = predict_probability(net, image, tile_size=tile, overlap=16, batch_size=2, tta=True,
                                  tta_symmetries=count, together=False)
    shapes_in_turn, net.shapes = net.shapes, []
    together = predict_probability(net, image, tile_size=tile, overlap=16, batch_size=2, tta=True,
                                   tta_symmetries=count, together=True)
    np.testing.assert_allclose(together, in_turn, atol=1e-5)
    chunks = len(shapes_in_turn) // count  # batches of tiles
    assert all((s[-1] == s[-2]) == square for s in shapes_in_turn)
    assert len(net.shapes) == chunks * (1 if square else 2)
    assert sum(s[0] for s in net.shapes) == sum(s[0] for s in shapes_in_turn)  # the same images


@pytest.mark.parametrize("gib, together", [(8, False), (16, True), (141, True)])
def test_symmetries_go_together_on_a_large_gpu_only(monkeypatch, gib: float, together: bool) -> None:
    class Properties:
        total_memory = int(gib * 1024 ** 3)

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties())
    assert predict_module.symmetries_together("cuda") == together
    assert predict_module.symmetries_together("cuda:1") == together
    assert not predict_module.symmetries_together("cpu")
    net = _CountingNet(_random_net(depth=2, seed=32))
    predict_probability(net, _image((64, 64)), tta=True, tta_symmetries=4, device="cpu")
    assert [s[0] for s in net.shapes] == [1, 1, 1, 1]  # the CPU default: one after another


def test_tta_with_tiles() -> None:
    net = _random_net(depth=2, seed=12)
    image = _image((256, 224), seed=13)
    whole = predict_probability(net, image, tile_size=1024, overlap=0, tta=True)
    tiled = predict_probability(net, image, tile_size=128, overlap=96, tta=True)
    assert np.abs(whole - tiled).max() < 1e-4


# ------------------------------------------------------------------------------------- precision
def test_bfloat16_forward_passes_stay_close_to_float32_and_return_float32() -> None:
    net = _random_net(depth=2, seed=14)
    image = _image((160, 144), seed=15)
    reference = predict_probability(net, image, tta=True)
    with forward_precision("cpu", "bfloat16"):
        low = predict_probability(net, image, tta=True)
    assert low.dtype == np.float32
    assert 0 < np.abs(low - reference).max() < 0.02  # bfloat16 really ran, and stayed close
    with forward_precision("cpu", "float32"):
        same = predict_probability(net, image, tta=True)
    assert np.array_equal(same, reference)
    # the head sums in float32 under autocast: no bfloat16 plateaus in the map
    with forward_precision("cpu", "bfloat16"), torch.no_grad():
        assert net(torch.from_numpy(image)[None, None]).dtype == torch.float32
    assert len(np.unique(low)) > 0.5 * len(np.unique(reference))


def test_float16_needs_a_gpu_and_unknown_precisions_are_refused() -> None:
    with pytest.raises(CryoUNetError, match="float16 needs a CUDA GPU.*use bfloat16"):
        with forward_precision("cpu", "float16"):
            pass
    with pytest.raises(CryoUNetError, match="unknown pick.precision"):
        with forward_precision("cpu", "int8"):
            pass
    with pytest.raises(CryoUNetError, match="pick.precision must be one of float32, bfloat16, float16"):
        CryoUNetConfig().updated({"pick": {"precision": "half"}}).validate("test")


def test_picker_rewrites_its_networks_and_keeps_the_probabilities_of_a_plain_pass() -> None:
    net = _random_net(depth=2, seed=18)
    micrograph = _image((128, 128), seed=19)
    picker = Picker([_loaded(copy.deepcopy(net), diameter=16.0)], PickConfig(tta=True))
    # Batch norms folded into the convolutions, weights channels-last: the same probabilities.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in picker.models[0].network.modules())
    image, _ = preprocess(micrograph, 16.0, picker.preprocess_cfg)
    np.testing.assert_allclose(picker.probability(image)[0],
                               predict_probability(net, image, tta=True, tta_symmetries=4), atol=1e-5)


class _SmallMemoryNet(nn.Module):
    """AffineNet on a device that runs out of memory above ``limit`` input elements per pass."""

    multiple = 1

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.passes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB\nmore text")
        self.passes.append(tuple(x.shape))
        return 0.05 * x - 1.0


def test_picker_uses_less_memory_after_running_out(caplog) -> None:
    """Out of memory: symmetries in turn, then fewer tiles per pass, then smaller tiles, each logged;
    the picker keeps the lower setting for the next micrographs; the map is the same."""
    image = _image((600, 600), seed=40)
    reference = predict_probability(_SmallMemoryNet(10 ** 9), image, tile_size=600, tta=True, tta_symmetries=4)
    net = _SmallMemoryNet(320 * 320)
    picker = Picker([_loaded(net)], PickConfig(tta=True, tile_size=600, batch_size=2, edge_exclusion=0.0))
    picker.together = True  # as on a GPU
    with caplog.at_level("WARNING", logger="cryounet"):
        prob = picker.probability(image)[0]
    np.testing.assert_allclose(prob, reference, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 and all("out of memory on cpu (CUDA out of memory. Tried to allocate 9.00 GiB)"
                                      in w for w in warnings)
    assert "one after another" in warnings[0]
    assert "now 1 tile(s) per pass (pick.batch_size)" in warnings[1]
    assert "now tiles of at most 300 px (pick.tile_size)" in warnings[2]
    assert not picker.together and picker.pick.batch_size == 1 and picker.pick.tile_size == 300
    assert max(shape[-1] for shape in net.passes) <= 300 and all(shape[0] == 1 for shape in net.passes)
    caplog.clear()
    with caplog.at_level("WARNING", logger="cryounet"):
        picker.probability(image)  # the next micrograph starts from the lower settings
    assert not caplog.records


def test_picker_gives_up_when_nothing_is_left_to_lower() -> None:
    picker = Picker([_loaded(_SmallMemoryNet(100))], PickConfig(tta=False, tile_size=512, batch_size=1))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        picker.probability(_image((300, 300)))
    assert picker.pick.tile_size == 256  # lowered as far as it goes, then the error


def test_picker_uses_the_configured_precision() -> None:
    net = _random_net(depth=2, seed=16)
    micrograph = _image((128, 128), seed=17)
    plain = Picker([_loaded(net, diameter=16.0)], PickConfig(tta=False))
    low = Picker([_loaded(net, diameter=16.0)], PickConfig(tta=False, precision="bfloat16"))
    a, b = plain.probability(micrograph)[0], low.probability(micrograph)[0]
    assert 0 < np.abs(a - b).max() < 0.02


# ------------------------------------------------------------------------------------- picking
def test_picker_maps_working_peaks_back_to_input_pixels() -> None:
    micrograph, xy = spots_micrograph()
    pick = PickConfig(edge_exclusion=0.0, nms_radius=0.5, tile_size=64, tile_overlap=16)
    picker = Picker([_loaded(AffineNet(0.05, -5.0))], pick)
    result = picker.pick_image(micrograph, threshold=0.5)
    assert result.scale.working_shape == (128, 128)
    assert result.probability.shape == (128, 128) and result.spread is None
    picks = result.picks
    assert len(picks) == 4 and picks.uncertainty is None
    found = picks.xy[np.lexsort((picks.xy[:, 1], picks.xy[:, 0]))]
    expected = xy[np.lexsort((xy[:, 1], xy[:, 0]))]
    np.testing.assert_allclose(found, expected, atol=0.1)
    assert (picks.scores > 0.95).all()


def test_picker_threshold_none_keeps_candidates_above_min_score() -> None:
    micrograph, _ = spots_micrograph()
    picker = Picker([_loaded(AffineNet(0.05, -5.0))], PickConfig(edge_exclusion=0.0, min_score=0.001))
    assert len(picker.pick_image(micrograph, threshold=None).picks) > 4  # noise peaks too
    assert len(picker.pick_image(micrograph, threshold=0.5).picks) == 4


def test_ensemble_mean_and_spread() -> None:
    micrograph, _ = spots_micrograph()
    models = [_loaded(AffineNet(0.05, -5.0), threshold=0.4, name="a"),
              _loaded(AffineNet(0.025, -2.0), threshold=0.6, name="b")]
    picker = Picker(models, PickConfig(edge_exclusion=0.0))
    assert picker.threshold() == pytest.approx(0.5)
    result = picker.pick_image(micrograph, threshold=0.5)
    image = _preprocessed(micrograph)
    single = [Picker([m], PickConfig()).probability(image)[0] for m in models]
    np.testing.assert_allclose(result.probability, (single[0] + single[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(result.spread, np.abs(single[0] - single[1]) / 2, atol=1e-6)
    picks = result.picks
    assert picks.uncertainty is not None and len(picks.uncertainty) == len(picks) == 4
    rows = np.round(result.scale.to_working(picks.xy)[:, 1]).astype(int)
    cols = np.round(result.scale.to_working(picks.xy)[:, 0]).astype(int)
    np.testing.assert_allclose(picks.uncertainty, result.spread[rows, cols])


def _preprocessed(micrograph: np.ndarray) -> np.ndarray:
    from cryounet.preprocess import preprocess

    cfg = CryoUNetConfig().updated({"preprocess": {"working_diameter": 16.0, "clip": 0.0}})
    return preprocess(micrograph, 32.0, cfg.preprocess)[0]


def test_ensemble_refuses_mixed_diameters_and_empty_list() -> None:
    with pytest.raises(CryoUNetError, match="cannot be combined"):
        Picker([_loaded(AffineNet(), 32.0, name="a"), _loaded(AffineNet(), 40.0, name="b")],
               PickConfig())
    with pytest.raises(CryoUNetError, match="no model"):
        Picker([], PickConfig())


def test_peaks_to_picks_edge_exclusion_and_scaling() -> None:
    prob = gaussian_blobs((50, 60), np.array([[2.0, 25.0], [30.0, 25.0]]), 1.0).astype(np.float32)
    scale = Scale((100, 120), (50, 60))  # factor 2
    kept = peaks_to_picks(prob, None, scale, 20.0, PickConfig(edge_exclusion=0.5), 0.5)
    # Working diameter 10: edge distance 5 drops the peak at x = 2.
    np.testing.assert_allclose(kept.xy, [[60.5, 50.5]], atol=1e-6)
    both = peaks_to_picks(prob, None, scale, 20.0, PickConfig(edge_exclusion=0.0), 0.5)
    assert len(both) == 2


# --------------------------------------------------------------- candidate_peaks clean-up
def _map_with_artefacts() -> np.ndarray:
    """A 100 x 100 map (particle diameter 10, disk area ~79 px): a particle-sized response at
    (30, 30) (~0.8 particle areas above 0.5), a 1 px ridge along row 80 (90 px, ~1.15 areas)
    and a one-pixel speck at (70, 30)."""
    yy, xx = np.mgrid[0:100, 0:100]
    prob = np.where(np.hypot(xx - 30, yy - 30) <= 4.5, 0.6, 0.0)
    prob = prob + gaussian_blobs((100, 100), [[30.0, 30.0]], 2.0, 0.3)
    prob[80, 5:95] = 0.8 + 0.05 * np.sin(np.arange(90) / 3.0)  # a ridge with local maxima
    prob += gaussian_blobs((100, 100), [[70.0, 30.0]], 0.6, 0.85)
    return prob.astype(np.float32)


def test_candidate_peaks_default_leaves_the_map_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.postprocess import peaks as inference
    from cryounet.postprocess.peaks import find_peaks

    def forbidden(*args, **kwargs):
        raise AssertionError("clean_probability called without any clean-up option")

    monkeypatch.setattr(inference, "clean_probability", forbidden)
    prob = _map_with_artefacts()
    pick = PickConfig(edge_exclusion=0.0)
    xy, scores = inference.candidate_peaks(prob, 10.0, pick, 0.5)
    ref_xy, ref_scores = find_peaks(prob, 5.0, 0.5)
    np.testing.assert_array_equal(xy, ref_xy)
    np.testing.assert_array_equal(scores, ref_scores)
    assert len(xy) > 3  # the blob, the speck and peaks along the line


@pytest.mark.parametrize("option, removed", [
    ({"opening_radius": 0.25}, "line and speck"),
    ({"min_component_area": 0.5}, "speck"),
    ({"max_component_area": 1.0}, "line"),
])
def test_candidate_peaks_applies_each_clean_up_option(option: dict, removed: str) -> None:
    from cryounet.postprocess.peaks import candidate_peaks

    prob = _map_with_artefacts()

    def where(xy):
        return (np.abs(xy[:, 1] - 80) < 1, np.hypot(xy[:, 0] - 70, xy[:, 1] - 30) < 2,
                np.hypot(xy[:, 0] - 30, xy[:, 1] - 30) < 2.5)  # (opening flattens the top)

    on_line, at_speck, at_blob = where(candidate_peaks(prob, 10.0, PickConfig(edge_exclusion=0.0), 0.5)[0])
    assert on_line.sum() >= 2 and at_speck.sum() == 1 and at_blob.sum() == 1  # without clean-up
    xy, _ = candidate_peaks(prob, 10.0, PickConfig(edge_exclusion=0.0, **option), 0.5)
    on_line, at_speck, at_blob = where(xy)
    assert at_blob.sum() == 1
    assert (on_line.sum() == 0) == ("line" in removed)
    assert (at_speck.sum() == 0) == ("speck" in removed)


def test_candidate_peaks_component_level() -> None:
    from cryounet.postprocess.peaks import candidate_peaks

    prob = _map_with_artefacts()
    # Regions above 0.95: none, so the area filter removes nothing.
    loose = PickConfig(edge_exclusion=0.0, min_component_area=0.5, component_level=0.95)
    strict = PickConfig(edge_exclusion=0.0, min_component_area=0.5)
    assert len(candidate_peaks(prob, 10.0, loose, 0.5)[0]) == \
        len(candidate_peaks(prob, 10.0, PickConfig(edge_exclusion=0.0), 0.5)[0])
    assert len(candidate_peaks(prob, 10.0, strict, 0.5)[0]) < len(candidate_peaks(prob, 10.0, loose, 0.5)[0])


def test_candidate_peaks_edge_exclusion_boundaries() -> None:
    from cryounet.postprocess.peaks import candidate_peaks

    # Diameter 10, edge_exclusion 0.5: a peak is kept when 4.5 <= x, y <= 54.5 (60 x 60 map).
    centres = {(4.0, 30.0): False, (5.0, 15.0): True, (54.0, 15.0): True, (55.0, 40.0): False,
               (30.0, 4.0): False, (20.0, 55.0): False, (40.0, 54.0): True, (30.0, 30.0): True}
    prob = gaussian_blobs((60, 60), list(centres), 1.0, 0.9).astype(np.float32)
    xy, _ = candidate_peaks(prob, 10.0, PickConfig(edge_exclusion=0.5), 0.5)
    kept = {tuple(np.round(p, 3)) for p in xy}
    assert kept == {c for c, inside in centres.items() if inside}
    every = candidate_peaks(prob, 10.0, PickConfig(edge_exclusion=0.0), 0.5)[0]
    assert len(every) == len(centres)
    # A wider exclusion (1 diameter: 9.5 <= x, y <= 49.5) keeps only the middle one.
    xy, _ = candidate_peaks(prob, 10.0, PickConfig(edge_exclusion=1.0), 0.5)
    np.testing.assert_allclose(xy, [[30.0, 30.0]], atol=1e-6)


# ----------------------------------------------------------- thresholds with test-time augmentation
def test_auto_threshold_follows_tta_calibration(caplog: pytest.LogCaptureFixture) -> None:
    net = AffineNet(0.05, -5)
    plain = _loaded(net, threshold=0.4)
    calibrated = _loaded(net, threshold=0.4)
    calibrated.info.threshold_tta = 0.3
    assert Picker([calibrated], PickConfig(tta=False)).threshold() == pytest.approx(0.4)
    assert Picker([calibrated], PickConfig(tta=True)).threshold() == pytest.approx(0.3)
    # An ensemble mixes what each member has; a member without TTA calibration is said in the log.
    with caplog.at_level("WARNING", logger="cryounet"):
        mixed = Picker([calibrated, plain], PickConfig(tta=True)).threshold()
    assert mixed == pytest.approx(0.35)
    assert any("no threshold calibrated with test-time augmentation" in r.getMessage()
               for r in caplog.records)


def test_threshold_rule_explicit_then_configured_then_calibrated() -> None:
    """One rule (cryounet.io.model_folder.picking_threshold): explicit > pick.threshold > calibrated."""
    model = _loaded(AffineNet(0.05, -5), threshold=0.4)
    model.info.threshold_tta = 0.3
    assert Picker([model], PickConfig(tta=True)).threshold() == pytest.approx(0.3)
    assert Picker([model], PickConfig(tta=True, threshold=0.6)).threshold() == pytest.approx(0.6)
    assert Picker([model], PickConfig(tta=True, threshold=0.6)).threshold(0.8) == pytest.approx(0.8)
    assert Picker([model], PickConfig(tta=False)).threshold(0.0) == 0.0  # 0 is a value, not "auto"

