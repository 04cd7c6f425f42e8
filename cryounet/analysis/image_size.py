"""Particle size from the micrographs: the radial profile of averaged picks, and a blob scale space.

See :mod:`cryounet.analysis.diameter` for what the methods measure; both return
:class:`~cryounet.analysis.diameter.MethodEstimate`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import kurtosis

from cryounet.analysis.diameter import MethodEstimate

#: Where the profile's edge (midway between its zero crossing and its halo) lies, as a share of the
#: particle radius (0.75-0.83 on simulated particles of 30, 60 and 120 px).
PROFILE_EDGE = 0.78
#: Samples of the radial profile (the micrograph is block-averaged so the search radius spans these).
PROFILE_SAMPLES = 48
#: Picks averaged for the profile, all micrographs together (more adds time, not accuracy).
MAX_PROFILE_PICKS = 2000
#: Side (px) the micrograph is block-averaged to for the blob scale space.
BLOB_SIDE = 512
#: Blob candidates per micrograph measured by the profile.
BLOBS_PER_MICROGRAPH = 150


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` averaged over ``factor`` x ``factor`` blocks (the ragged edge dropped), float32."""
    image = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return image.copy()
    ny, nx = (s // factor for s in image.shape)
    return image[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor).mean(axis=(1, 3))


def _normalised(image: np.ndarray) -> np.ndarray:
    image = ndi.gaussian_filter(image, 1.0)
    return (image - image.mean()) / max(float(image.std()), 1e-12)


def radial_profile(images: Sequence[np.ndarray], xy_sets: Sequence[np.ndarray], radius_px: float
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Rotational average of the micrographs around the picks, out to ``radius_px``.

    Returns:
        Radii (px of the micrographs), the profile (in standard deviations of the low-passed,
        block-averaged micrograph) and the number of picks averaged (those a full box away from the
        edges).
    """
    factor = max(1, int(round(radius_px / PROFILE_SAMPLES)))
    half = int(math.ceil(radius_px / factor))
    total = np.zeros((2 * half + 1, 2 * half + 1))
    used = 0
    per_image = max(1, MAX_PROFILE_PICKS // max(1, len(images)))
    for image, xy in zip(images, xy_sets):
        small = _normalised(block_mean(image, factor))
        centres = np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2) / factor
                          - (factor - 1) / (2 * factor)).astype(int)
        inside = ((centres >= half).all(axis=1) & (centres[:, 0] < small.shape[1] - half)
                  & (centres[:, 1] < small.shape[0] - half))
        for x, y in centres[inside][:per_image]:
            total += small[y - half: y + half + 1, x - half: x + half + 1]
            used += 1
    yy, xx = np.indices(total.shape) - half
    ring = np.rint(np.hypot(xx, yy)).astype(int).ravel()
    keep = ring <= half
    counts = np.bincount(ring[keep], minlength=half + 1)
    profile = np.bincount(ring[keep], (total / max(used, 1)).ravel()[keep], minlength=half + 1) / counts
    return np.arange(half + 1) * float(factor), profile, used


def edge_radius(radii: np.ndarray, profile: np.ndarray) -> tuple[float, float] | None:
    """The particle's zero crossing and the peak of its halo (px) in a radial profile, or None when
    the profile has no particle contrast that ends inside it."""
    n = len(profile)
    contrast = profile - profile[int(0.75 * n):].mean()
    inner = max(2, int(0.6 * n))
    top = int(np.argmax(np.abs(contrast[:inner])))
    sign = np.sign(contrast[top])
    after = np.flatnonzero(sign * contrast[top:] <= 0)
    if sign == 0 or not len(after):
        return None
    k = top + int(after[0])  # first sample at or past zero
    a, b = sign * contrast[k - 1], sign * contrast[k]
    zero = radii[k - 1] + (radii[k] - radii[k - 1]) * a / max(a - b, 1e-12)
    stop = min(n, 2 * k + 2)
    halo = radii[k + int(np.argmax(-sign * contrast[k:stop]))]
    return float(zero), float(max(halo, zero))


def profile_estimate(images: Sequence[np.ndarray], xy_sets: Sequence[np.ndarray], radius_px: float,
                     method: str = "profile") -> MethodEstimate:
    """The ``profile`` method: the particle edge in the rotational average around the picks."""
    radii, profile, used = radial_profile(images, xy_sets, radius_px)
    if used < 3:
        return MethodEstimate(method, None, used=used, note=f"too few picks a box away from the edges ({used})")
    edge = edge_radius(radii, profile)
    if edge is None:
        return MethodEstimate(method, None, used=used,
                              note=f"no particle edge within {radius_px:.0f} px of the picks")
    zero, halo = edge
    diameter = (zero + halo) / PROFILE_EDGE
    return MethodEstimate(method, diameter, low=2 * zero / PROFILE_EDGE, high=2 * halo / PROFILE_EDGE,
                          used=used, note=f"contrast ends at r = {zero:.0f} px, halo at {halo:.0f} px")


def blob_scale(image: np.ndarray) -> tuple[float, int, np.ndarray]:
    """The LoG scale (sigma, px of the block-averaged image) whose response is most heavy-tailed,
    the block factor and the response at that scale (large scales are measured on a further
    block-averaged copy, for speed)."""
    factor = max(1, max(image.shape) // BLOB_SIDE)
    small = _normalised(block_mean(image, factor))
    best_k, best_sigma = -np.inf, 1.0
    for sigma in np.geomspace(1.0, max(small.shape) / 16.0, 20):
        step = max(1, int(sigma // 2))
        level = block_mean(small, step) if step > 1 else small
        response = -ndi.gaussian_laplace(level, sigma / step)
        m = int(3 * sigma / step) + 1
        core = response[m:-m, m:-m]
        if core.size < 100:
            break
        k = float(kurtosis(core.ravel()))
        if k > best_k:
            best_k, best_sigma = k, float(sigma)
    return best_sigma, factor, -best_sigma ** 2 * ndi.gaussian_laplace(small, best_sigma)


def blob_picks(image: np.ndarray, diameter: float | None = None, count: int = BLOBS_PER_MICROGRAPH
               ) -> tuple[np.ndarray, float]:
    """The ``count`` strongest LoG extrema (``(N, 2)`` x, y in px of ``image``) at the scale of
    ``diameter`` (px; by default the most heavy-tailed scale, :func:`blob_scale`), and that scale's
    diameter (``2 sqrt 2 sigma``, px)."""
    if diameter is None:
        sigma, factor, response = blob_scale(image)
    else:
        factor = max(1, max(image.shape) // BLOB_SIDE)
        sigma = diameter / (2 * math.sqrt(2) * factor)
        response = -sigma ** 2 * ndi.gaussian_laplace(_normalised(block_mean(image, factor)), sigma)
    if abs(np.percentile(response, 0.1)) > abs(np.percentile(response, 99.9)):
        response = -response  # the particles' side of the response is the heavier tail
    size = max(3, int(2 * math.sqrt(2) * sigma) | 1)
    peaks = (response == ndi.maximum_filter(response, size=size)) & (response > 0)
    m = int(2 * sigma) + 1
    peaks[:m], peaks[-m:], peaks[:, :m], peaks[:, -m:] = False, False, False, False
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-response[ys, xs])[:count]
    xy = (np.stack([xs[order], ys[order]], axis=1) + 0.5) * factor - 0.5
    return xy.astype(np.float64), 2 * math.sqrt(2) * sigma * factor


def blob_estimate(images: Sequence[np.ndarray]) -> MethodEstimate:
    """The ``blobs`` method (micrographs alone): candidates at the most heavy-tailed LoG scale,
    measured by their profile; then candidates detected again at the scale of that measurement and
    measured once more (one step: on simulated 120 px particles it corrects 1.47x to 1.07x; more
    steps drift on the crowded CryoPPP-10947 and the hollow apoferritin of EMPIAR-10146)."""
    if not images:
        return MethodEstimate("blobs", None, note="no micrographs")
    found = [blob_picks(image) for image in images]
    scale = float(np.median([d for _, d in found]))
    side = min(min(image.shape) for image in images)
    first = profile_estimate(images, [xy for xy, _ in found], min(2.0 * scale, side / 6.0), "blobs")
    if first.diameter_px is None:
        first.note = f"blob scale {scale:.0f} px; {first.note}"
        return first
    again = [blob_picks(image, first.diameter_px)[0] for image in images]
    second = profile_estimate(images, again, min(2.0 * first.diameter_px, side / 6.0), "blobs")
    final = second if second.diameter_px is not None else first
    final.note = f"blob scale {scale:.0f} px, first measure {first.diameter_px:.0f} px; {final.note}"
    return final
