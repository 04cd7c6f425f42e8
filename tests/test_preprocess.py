"""Working scale, normalisation and coordinate mapping (cryounet.preprocess)."""
from __future__ import annotations

import numpy as np
import pytest

from cryounet.config import CryoUNetConfig, PreprocessConfig
from cryounet.errors import CryoUNetError
from engine_helpers import gaussian_blobs
from cryounet.preprocess import (FILL_SCALE, Scale, downsample_factor, flat_mask, lowpass, normalise, preprocess,
                                 working_scale)


# ------------------------------------------------------------------------------- coordinates
@pytest.mark.parametrize("input_shape, working_shape", [
    ((1024, 1024), (256, 256)),
    ((301, 517), (150, 259)),  # anisotropic, with rounding: different factors per axis
    ((4096, 5760), (1170, 1646)),
    ((64, 64), (64, 64)),  # no downsampling
])
def test_round_trip_input_working_input_is_exact(input_shape, working_shape) -> None:
    scale = Scale(input_shape, working_shape)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.5, 1, size=(200, 2)) * [input_shape[1], input_shape[0]]
    np.testing.assert_allclose(scale.to_input(scale.to_working(xy)), xy, rtol=0, atol=1e-9)
    w = rng.uniform(0, 1, size=(50, 2)) * [working_shape[1], working_shape[0]]
    np.testing.assert_allclose(scale.to_working(scale.to_input(w)), w, rtol=0, atol=1e-9)


def test_known_downsample_mapping() -> None:
    # 4x downsampling: input pixels 0..3 (centre 1.5) form working pixel 0.
    scale = working_scale((1024, 768), 64.0, PreprocessConfig(working_diameter=16))
    assert scale.working_shape == (256, 192)
    assert scale.factors == (4.0, 4.0)
    np.testing.assert_allclose(scale.to_working([[1.5, 1.5], [5.5, 9.5], [-0.5, 1023.5]]),
                               [[0, 0], [1, 2], [-0.5, 255.5]])
    np.testing.assert_allclose(scale.to_input([[0, 0], [255, 191]]), [[1.5, 1.5], [1021.5, 765.5]])


def test_anisotropic_axes_are_mapped_separately() -> None:
    scale = Scale((300, 200), (100, 50))  # y factor 3, x factor 4
    assert scale.factors == (4.0, 3.0)
    np.testing.assert_allclose(scale.to_working([[1.5, 1.0]]), [[0.0, 0.0]])
    # The image edges map onto the image edges on both axes.
    np.testing.assert_allclose(scale.to_working([[199.5, 299.5]]), [[49.5, 99.5]])
    np.testing.assert_allclose(scale.to_input([[-0.5, -0.5]]), [[-0.5, -0.5]])


def test_downsampled_image_matches_mapped_coordinates() -> None:
    # A bright 4x4 block at input columns 20-23, rows 8-11 becomes one working pixel (factor 4);
    # its centre maps to exactly that pixel.
    image = np.zeros((128, 96), dtype=np.float32)
    image[8:12, 20:24] = 100.0
    image += np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32)
    work, scale = preprocess(image, 64.0, PreprocessConfig(working_diameter=16, clip=0))
    assert work.shape == (32, 24) and scale.working_shape == (32, 24)
    row, col = np.unravel_index(np.argmax(work), work.shape)
    np.testing.assert_allclose(scale.to_working([[21.5, 9.5]]), [[col, row]])
    assert (row, col) == (2, 5)


# ---------------------------------------------------------------------------------- geometry
def test_downsample_factor() -> None:
    cfg = PreprocessConfig(working_diameter=16)
    assert downsample_factor(64, cfg) == 4.0
    assert downsample_factor(8, cfg) == 1.0  # never upsampled
    for bad in (0.0, -3.0):
        with pytest.raises(CryoUNetError, match="diameter must be a positive number of pixels"):
            downsample_factor(bad, cfg)


def test_working_scale_shape_and_refusals() -> None:
    cfg = PreprocessConfig(working_diameter=16)
    assert working_scale((512, 300), 32, cfg).working_shape == (256, 150)
    with pytest.raises(CryoUNetError, match="not smaller than the micrograph"):
        working_scale((192, 192), 200, cfg)
    with pytest.raises(CryoUNetError, match="not smaller than the micrograph"):
        working_scale((100, 300), 100, cfg)
    with pytest.raises(CryoUNetError, match="too small to pick"):
        working_scale((10, 50), 8, cfg)


# ------------------------------------------------------------------------------ normalisation
def test_robust_normalisation_is_centred_and_clipped() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(50, 4, size=(200, 200)).astype(np.float32)
    image[0, :20] = 1e6  # outliers barely move a robust estimate
    out = normalise(image, PreprocessConfig(normalisation="robust", clip=5))
    assert out.dtype == np.float32
    assert abs(float(np.median(out))) < 0.02
    assert 0.95 < 1.4826 * float(np.median(np.abs(out - np.median(out)))) < 1.05
    assert out.max() == pytest.approx(5.0) and out.min() >= -5.0


def test_standard_normalisation_without_clip() -> None:
    image = np.random.default_rng(2).normal(-3, 7, size=(64, 80))
    out = normalise(image, PreprocessConfig(normalisation="standard", clip=0))
    assert abs(out.mean()) < 1e-5 and out.std() == pytest.approx(1.0, rel=1e-4)


def test_robust_falls_back_to_std_when_mad_is_zero() -> None:
    image = np.zeros((32, 32), dtype=np.float32)
    image[:3, :3] = 10.0  # MAD = 0 but the image has contrast
    out = normalise(image, PreprocessConfig(clip=0))
    assert np.isfinite(out).all() and out.max() > 0


def test_normalisation_errors() -> None:
    with pytest.raises(CryoUNetError, match="unknown normalisation 'minmax'"):
        normalise(np.arange(16.0).reshape(4, 4), PreprocessConfig(normalisation="minmax"))
    with pytest.raises(CryoUNetError, match="no contrast"):
        normalise(np.ones((8, 8)), PreprocessConfig())


# ------------------------------------------------------------------- blank and flat regions
def _micrograph(seed: int = 4, size: int = 256) -> np.ndarray:
    """Noise with a low-frequency background and dark blobs, at a detector-like offset."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 10, (size, size)) + 100
    image -= 30 * gaussian_blobs((size, size), rng.uniform(0, size, (40, 2)), 4.0)
    return image.astype(np.float32)


def _spread(out: np.ndarray, region: np.ndarray) -> float:
    values = out[region]
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


@pytest.mark.parametrize("normalisation", ["robust", "standard"])
@pytest.mark.parametrize("kind", ["zero padding 50 %", "constant bar", "vacuum"])
def test_flat_regions_do_not_change_the_scale_of_the_rest(kind: str, normalisation: str) -> None:
    cfg = PreprocessConfig(normalisation=normalisation, clip=0)
    image = _micrograph()
    plain = normalise(image, cfg)
    blank = image.copy()
    intact = np.ones(image.shape, dtype=bool)
    if kind == "zero padding 50 %":
        intact[:, 128:] = False
        blank[~intact] = 0.0
    elif kind == "constant bar":
        intact[90:150] = False
        blank[~intact] = image.min()
    else:  # denoised vacuum: bright, near constant (2 % of the noise)
        intact[:100, :140] = False
        blank[~intact] = 160 + np.random.default_rng(5).normal(0, 0.2, np.count_nonzero(~intact))
    out = normalise(blank, cfg)
    inner = intact & ~flat_mask(blank, cfg.working_diameter)  # the intact part, less the margin
    assert inner.mean() > 0.8 * intact.mean()
    # the intact part keeps its level and scale (statistics over the whole image move it by 3-7 here)
    assert np.ptp(out[inner] - plain[inner]) < 0.5
    assert _spread(out, inner) == pytest.approx(_spread(plain, inner), rel=0.1)
    # the flat region reads as quiet empty ice: white noise of half the scale around the centre
    assert abs(float(out[~intact].mean())) < 0.05
    assert float(out[~intact].std()) == pytest.approx(FILL_SCALE, rel=0.05)
    assert abs(np.corrcoef(out[~intact][:-1], out[~intact][1:])[0, 1]) < 0.05
    np.testing.assert_array_equal(normalise(blank, cfg), out)  # the same image, the same result


def test_ordinary_micrographs_normalise_exactly_as_over_the_whole_image() -> None:
    image = _micrograph(seed=6, size=300)
    assert flat_mask(image, 16.0) is None
    sample = image.astype(np.float64)
    centre = np.median(sample)
    spread = 1.4826 * np.median(np.abs(sample - centre))
    np.testing.assert_allclose(normalise(image, PreprocessConfig(clip=0)), (sample - centre) / spread,
                               rtol=0, atol=1e-4)


def test_flat_mask_on_a_large_image_uses_a_subgrid_and_still_finds_the_padding() -> None:
    image = np.random.default_rng(7).normal(0, 1, (1600, 1200)).astype(np.float32) + 50
    assert flat_mask(image, 32.0) is None  # no flat specks by chance in pure noise
    image[:400] = 0.0
    mask = flat_mask(image, 32.0)
    assert mask.shape == image.shape
    assert mask[:400].all() and not mask[420:].any()  # the padding and a margin of a few pixels


def test_an_image_flat_almost_everywhere_falls_back_to_the_whole_image() -> None:
    image = np.zeros((128, 128), dtype=np.float32)
    image[60:62, 60:62] = 5.0  # informative part far below the minimum share
    out = normalise(image, PreprocessConfig(clip=0))
    assert np.isfinite(out).all() and out.max() > 0


def test_a_fully_flat_image_is_refused_as_without_contrast() -> None:
    for value in (0.0, 137.0):
        with pytest.raises(CryoUNetError, match="no contrast"):
            normalise(np.full((96, 96), value, dtype=np.float32), PreprocessConfig())
    with pytest.raises(CryoUNetError, match="no contrast"):
        preprocess(np.zeros((512, 512), dtype=np.int16), 64.0, PreprocessConfig())


def test_preprocess_accepts_integer_input_and_keeps_small_particles_at_full_size() -> None:
    image = (np.random.default_rng(3).random((40, 60)) * 1000).astype(np.int16)
    out, scale = preprocess(image, 10.0, PreprocessConfig(working_diameter=16))
    assert out.shape == (40, 60) and out.dtype == np.float32
    assert scale.input_shape == scale.working_shape == (40, 60)


def test_lowpass_off_is_the_identity_and_on_removes_high_frequencies() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(64, 64)).astype(np.float32)
    assert lowpass(noise, 0) is noise
    smooth = lowpass(noise, 1.5)
    assert smooth.shape == noise.shape and smooth.dtype == np.float32
    # pixel-to-pixel differences (high frequencies) shrink; the mean level stays
    assert np.abs(np.diff(smooth, axis=1)).mean() < 0.3 * np.abs(np.diff(noise, axis=1)).mean()
    assert abs(float(smooth.mean()) - float(noise.mean())) < 0.05
    flat = np.full((8, 8), 3.0, dtype=np.float32)
    np.testing.assert_allclose(lowpass(flat, 2.0), flat, rtol=1e-6)  # reflected border: no edge dip


def test_preprocess_applies_the_lowpass_in_working_pixels() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(128, 128)).astype(np.float32)
    plain, _ = preprocess(image, 16.0, PreprocessConfig(clip=0))
    blurred, _ = preprocess(image, 16.0, PreprocessConfig(clip=0, lowpass_sigma=0.1))
    assert np.abs(np.diff(blurred, axis=0)).mean() < 0.5 * np.abs(np.diff(plain, axis=0)).mean()


@pytest.mark.parametrize("sigma", [-0.1, 1.5, float("nan")])
def test_lowpass_sigma_out_of_range_is_refused(sigma: float) -> None:
    with pytest.raises(CryoUNetError, match="preprocess.lowpass_sigma"):
        CryoUNetConfig.from_dict({"preprocess": {"lowpass_sigma": sigma}})
