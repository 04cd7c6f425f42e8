"""Reading the evidence for :mod:`cryounet.analysis.diameter`: micrographs, their coordinate files
and the box sizes recorded in them; :func:`estimate_diameter` runs the methods on them."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cryounet.analysis.diameter import (DiameterEstimate, MethodEstimate, box_estimate, combine,
                                        diameter_problem, nearest_neighbour_distances, spacing_estimate)
from cryounet.analysis.image_size import blob_estimate, profile_estimate
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.coordinates import (BOX_FACTOR, BOX_SUFFIXES, STAR_SUFFIXES, find_coordinate_file,
                                     is_folder_index, read_coordinates)
from cryounet.io.folders import input_folder
from cryounet.io.mrc import micrograph_shape, read_micrograph, read_pixel_size

logger = logging.getLogger(__name__)

#: Micrographs read for the image methods (the first ones; the spacing uses every coordinate file).
MAX_IMAGES = 6
#: STAR columns that record a box size per pick (crYOLO's box files are STAR with these).
STAR_BOX_COLUMNS = ("Width", "Height")


@dataclass
class Evidence:
    """Picks per micrograph (``xy``), micrograph shapes, recorded box sizes, and the micrographs
    the image methods read."""

    paths: list[Path]
    xy: list[np.ndarray]
    shapes: list[tuple[int, int]]
    box_sizes: list[float]


def recorded_box_sizes(path: str | os.PathLike[str]) -> list[float]:
    """Box sizes (px) a coordinate file records: BOX width/height, STAR ``_Width``/``_Height``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in BOX_SUFFIXES:
        sizes = []
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split()
            try:
                sizes += [float(fields[2]), float(fields[3])]
            except (IndexError, ValueError):
                continue
        return sizes
    if suffix in STAR_SUFFIXES or suffix == ".cbox":
        return _star_box_sizes(path)
    return []


def _star_box_sizes(path: Path) -> list[float]:
    import starfile  # pulls in pandas

    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception:  # noqa: BLE001 - unreadable here means no box recorded; read_coordinates says why
        return []
    for block in blocks.values():
        columns = list(getattr(block, "columns", []))
        found = [c for c in STAR_BOX_COLUMNS if c in columns]
        if found:
            values = np.asarray(block[found], dtype=np.float64).ravel()
            return [float(v) for v in values if np.isfinite(v)]
    return []


def evidence_from_picks(micrographs: Sequence[Path], xy_sets: Sequence[np.ndarray] | None = None,
                        box_sizes: Sequence[float] = ()) -> Evidence:
    """Evidence from picks held in memory (``xy_sets[i]`` on ``micrographs[i]``, px of that micrograph;
    None: the micrographs alone), as an application such as Scipion holds them."""
    paths = [Path(p) for p in micrographs]
    if xy_sets is not None and len(xy_sets) != len(paths):
        raise CryoUNetError(f"{len(xy_sets)} pick lists for {len(paths)} micrographs")
    xy = [np.zeros((0, 2)) for _ in paths] if xy_sets is None else \
        [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in xy_sets]
    return Evidence(paths, xy, [micrograph_shape(p) for p in paths], [float(b) for b in box_sizes if b])


def read_evidence(micrographs: Sequence[Path], coordinates: Path | None) -> Evidence:
    """The picks (when a coordinate folder is given) and shapes of the micrographs; those without a
    coordinate file are left out when there is a folder."""
    paths, xy, shapes, boxes = [], [], [], []
    if coordinates is not None:
        coordinates = input_folder(coordinates, "coordinates folder", is_folder_index)
    for path in micrographs:
        if coordinates is None:
            paths.append(path)
            shapes.append(micrograph_shape(path))
            xy.append(np.zeros((0, 2)))
            continue
        found = find_coordinate_file(path.stem, coordinates)
        if found is None:
            continue
        paths.append(path)
        shapes.append(micrograph_shape(path))
        xy.append(read_coordinates(found).xy)
        boxes += recorded_box_sizes(found)
    if coordinates is not None and not paths:
        raise CryoUNetError(f"{coordinates}: no coordinate file matches any of the {len(micrographs)} "
                            "micrographs (files are matched by name stem)")
    return Evidence(paths, xy, shapes, boxes)


def _images(evidence: Evidence, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``count`` readable micrographs (with picks when there are picks) and their picks."""
    images, xy = [], []
    with_picks = any(len(p) for p in evidence.xy)
    for path, picks in zip(evidence.paths, evidence.xy):
        if len(images) >= count:
            break
        if with_picks and not len(picks):
            continue
        try:
            images.append(np.asarray(read_micrograph(path), dtype=np.float32))
        except InputFileError as exc:
            logger.warning("diameter estimate: skipping %s", exc)
            continue
        xy.append(picks)
    return images, xy


def estimate_from(evidence: Evidence, use_coordinates: bool = True, use_images: bool = True,
                  max_images: int = MAX_IMAGES) -> DiameterEstimate:
    """Run the methods the evidence allows and combine them."""
    has_picks = use_coordinates and any(len(p) for p in evidence.xy)
    methods: list[MethodEstimate] = []
    if has_picks:
        methods += [box_estimate(evidence.box_sizes, BOX_FACTOR), spacing_estimate(evidence.xy, evidence.shapes)]
    if use_images:
        images, xy = _images(evidence, max_images)
        if has_picks:
            spacing = methods[1]
            nn = nearest_neighbour_distances(xy)
            reach = 1.5 * float(np.median(nn)) if len(nn) else min(min(i.shape) for i in images) / 8
            if spacing.high is not None:
                reach = max(reach, 1.5 * spacing.high)
            side = min(min(i.shape) for i in images)
            methods.append(profile_estimate(images, xy, min(reach, side / 6.0)))
        methods.append(blob_estimate(images))
    return combine(methods)


def estimate_diameter(micrographs: Sequence[Path], coordinates: Path | None = None,
                      use_images: bool = True, max_images: int = MAX_IMAGES) -> DiameterEstimate:
    """The particle diameter (px) the micrographs and, when given, their coordinate files suggest."""
    return estimate_from(read_evidence(micrographs, coordinates), use_images=use_images, max_images=max_images)


#: ``--diameter-check`` choices of ``cryounet train``.
CHECK_MODES = ("error", "warn", "off")


def training_diameter_problem(diameter: float, micrographs: Sequence[Path], coordinates: Path,
                              what: str = "--diameter") -> str | None:
    """One message when the training ``diameter`` (px) contradicts the estimate from the
    micrographs and their picks (stating the estimate and how to override the check), else None
    (also when the coordinate files hold no picks: the dark things in particle-free micrographs say
    nothing about the particle size)."""
    try:
        evidence = read_evidence(micrographs, coordinates)
    except CryoUNetError as exc:  # the training loaders report bad inputs in their own words
        logger.debug("diameter check skipped: %s", exc)
        return None
    if any(diameter >= min(shape) for shape in evidence.shapes):
        return None  # preprocessing refuses it, with its own words
    if not any(len(xy) for xy in evidence.xy):
        logger.info("%s holds no picks (particle-free micrographs): nothing to check diameter %g px against",
                    coordinates, diameter)
        return None
    estimate = estimate_from(evidence, max_images=3)
    problem = diameter_problem(diameter, estimate, nearest_neighbour_distances(evidence.xy))
    if problem is None:
        logger.info("particle diameter %g px; the data suggest %s", diameter, estimate.describe())
        return None
    hint = ""
    pixel = read_pixel_size(evidence.paths[0]) if evidence.paths else None
    if pixel and estimate.diameter_px and diameter_problem(diameter / pixel, estimate, np.zeros(0)) is None:
        hint = (f"; {diameter:g} looks like Angstrom: at the header's {pixel:g} A/px it is "
                f"{diameter / pixel:.0f} px")
    return (f"{what} {diameter:g} px does not fit the particles in {coordinates}: {problem}; the picks and "
            f"micrographs suggest {estimate.describe()}{hint}. Give the particle diameter "
            f"in pixels of these micrographs ('cryounet diameter' shows the evidence), or pass "
            f"--diameter-check off (or warn) to train with it anyway")
