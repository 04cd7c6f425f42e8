"""Crowded particles: peak scoring, NMS and touching-particle separation on trained models.

For each ``--model SET=PATH``, the probability maps of the set's ``valid`` and ``test`` micrographs
are computed once (test-time augmentation, as ``cryounet pick`` does by default) and cached under
``--cache``. Each post-processing variant (a set of ``pick`` overrides) then recalibrates the
threshold on ``valid`` exactly as training does (``cryounet.training.validation.validate``: the
plateau rule with ``train.calibration_tolerance``), because a new scoring rule changes the score
scale, and scores ``test`` as ``bench/common.py`` does (candidates down to its floor, then
``cryounet evaluate`` at the calibrated threshold): F1 (auto), best F1 and AP. One line per
variant, set and model; with several models of a set, also their mean. The cache is keyed by the
set and the model's weights: delete it after changing the preprocessing or the prediction code.

    python bench/crowded.py --model cryoppp-10947=PATH [--model SET=PATH ...] [--variants NAME ...]
                            [--data ../shared/data] [--cache bench/results/crowded] [--threads 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CANDIDATE_THRESHOLD, REPO  # noqa: E402

from cryounet.config import CryoUNetConfig, PickConfig  # noqa: E402
from cryounet.evaluation.metrics import (MATCH_RADIUS, average_precision, best_f1, evaluate,  # noqa: E402
                                         threshold_curve)
from cryounet.inference.picker import Picker  # noqa: E402
from cryounet.inference.picking import peaks_to_picks  # noqa: E402
from cryounet.io.coordinates import Picks, find_coordinate_file, read_coordinates  # noqa: E402
from cryounet.io.model_folder import WEIGHTS_NAME  # noqa: E402
from cryounet.io.mrc import read_micrograph  # noqa: E402
from cryounet.models.weights import LoadedModel, load_model  # noqa: E402
from cryounet.postprocess.peaks import candidate_peaks, disk_footprint  # noqa: E402
from cryounet.preprocess import Scale, preprocess  # noqa: E402
from cryounet.training.data import load_labelled  # noqa: E402

#: Post-processing variants: ``pick`` overrides of the model's own settings (``engine``: none;
#: ``baseline``: NMS at 0.4 diameters, what the models measured here first were trained and
#: calibrated with), and ``bench``-only
#: transforms of ideas that were measured but not kept in the engine: ``smooth`` (Gaussian smoothing
#: of the map, sigma in diameters, before peak finding), ``rescore`` (a pick's score is the mean
#: map value over a disk of this radius in diameters, instead of its peak value) and ``split``
#: ((level, area): a connected region of the map above ``level`` gets ``round(region area / (area
#: x particle disk area))`` picks, the missing ones placed by weighted k-means in the region) and
#: ``tail`` ((factor, nms): the local maxima of plain NMS at ``nms`` diameters that the engine's
#: peak finding dropped are added back with ``factor`` times their value, at the end of the ranking).
VARIANTS: dict[str, dict] = {
    "engine": {},
    "baseline": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}},
    "nms-0.30": {"pick": {"nms_radius": 0.30, "saddle_ratio": 0.0}},
    "nms-0.20": {"pick": {"nms_radius": 0.20, "saddle_ratio": 0.0}},
    "nms-0.15": {"pick": {"nms_radius": 0.15, "saddle_ratio": 0.0}},
    "nms-0.10": {"pick": {"nms_radius": 0.10, "saddle_ratio": 0.0}},
    "saddle-0.15-0.3-0.8": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.3, "saddle_ratio": 0.8}},
    "saddle-0.15-0.4-0.8": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.4, "saddle_ratio": 0.8}},
    "saddle-0.15-0.5-0.8": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.5, "saddle_ratio": 0.8}},
    "saddle-0.15-0.4-0.6": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.4, "saddle_ratio": 0.6}},
    "saddle-0.15-0.4-0.9": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.4, "saddle_ratio": 0.9}},
    "saddle-0.10-0.4-0.8": {"pick": {"nms_radius": 0.10, "saddle_radius": 0.4, "saddle_ratio": 0.8}},
    "saddle-0.20-0.4-0.8": {"pick": {"nms_radius": 0.20, "saddle_radius": 0.4, "saddle_ratio": 0.8}},
    "rescore-0.10": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}, "bench": {"rescore": 0.10}},
    "rescore-0.20": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}, "bench": {"rescore": 0.20}},
    "rescore-0.30": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}, "bench": {"rescore": 0.30}},
    "smooth-0.05": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}, "bench": {"smooth": 0.05}},
    "smooth-0.10": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}, "bench": {"smooth": 0.10}},
    "smooth-0.15": {"pick": {"nms_radius": 0.4, "saddle_ratio": 0.0}, "bench": {"smooth": 0.15}},
    "saddle-0.15-0.4-0.8+rescore-0.20": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.4, "saddle_ratio": 0.8},
                                         "bench": {"rescore": 0.20}},
    "saddle-0.15-0.4-0.8+split-0.4-0.3": {"pick": {"nms_radius": 0.15, "saddle_radius": 0.4,
                                                   "saddle_ratio": 0.8}, "bench": {"split": (0.4, 0.3)}},
    **{f"engine+tail-{factor}-{nms}": {"bench": {"tail": (factor, nms)}}
       for factor in (1.0, 0.5, 0.25, 0.1) for nms in (0.15, 0.10)},
}


@dataclass
class MapItem:
    """One micrograph's probability map (working pixels) and its ground truth."""

    name: str
    prob: np.ndarray
    scale: Scale
    truth: np.ndarray  # valid: working pixels (as training sees it); test: input pixels


def _digest(model: Path) -> str:
    return hashlib.sha1((model / WEIGHTS_NAME).read_bytes()).hexdigest()[:12]


def _valid_maps(model: LoadedModel, picker: Picker, folder: Path, diameter: float) -> list[MapItem]:
    """Maps of the validation micrographs exactly as training's validation computes them."""
    micrographs = sorted(folder.glob("*.mrc"))
    items, _ = load_labelled(micrographs, folder, diameter, model.info.config.preprocess)
    return [MapItem(it.name, picker.probability(it.image)[0], it.scale, it.xy) for it in items]


def _test_maps(model: LoadedModel, picker: Picker, folder: Path, diameter: float) -> list[MapItem]:
    """Maps of the test micrographs exactly as ``cryounet pick`` computes them."""
    out = []
    for mic in sorted(folder.glob("*.mrc")):
        image, scale = preprocess(read_micrograph(mic), diameter, model.info.config.preprocess)
        truth = read_coordinates(find_coordinate_file(mic.stem, folder)).xy
        out.append(MapItem(mic.stem, picker.probability(image)[0], scale, truth))
    return out


def load_maps(model_path: Path, root: Path, cache: Path) -> dict[str, list[MapItem]]:
    """``{"valid": [...], "test": [...]}`` maps of one model on one set (cached)."""
    diameter = json.loads((root / "meta.json").read_text())["diameter_px"]
    file = cache / f"{root.name}-{_digest(model_path)}.npz"
    if file.is_file():
        return _read_cache(file)
    model = load_model(model_path)
    pick = model.info.config.pick
    pick = dataclasses.replace(pick, tile_size=PickConfig().tile_size, batch_size=PickConfig().batch_size)
    picker = Picker([model], pick)
    maps = {"valid": _valid_maps(model, picker, root / "valid", diameter),
            "test": _test_maps(model, picker, root / "test", diameter)}
    _write_cache(file, maps)
    return maps


def _write_cache(file: Path, maps: dict[str, list[MapItem]]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, items in maps.items():
        for i, it in enumerate(items):
            key = f"{split}/{i}/{it.name}"
            arrays[key + "/prob"] = it.prob
            arrays[key + "/truth"] = it.truth
            arrays[key + "/shape"] = np.array(it.scale.input_shape + it.scale.working_shape)
    np.savez_compressed(file, **arrays)


def _read_cache(file: Path) -> dict[str, list[MapItem]]:
    data = np.load(file)
    maps: dict[str, list[MapItem]] = {"valid": [], "test": []}
    keys = sorted({k.rsplit("/", 1)[0] for k in data.files}, key=lambda k: (k.split("/")[0], int(k.split("/")[1])))
    for key in keys:
        split, _, name = key.split("/", 2)
        shape = [int(v) for v in data[key + "/shape"]]
        maps[split].append(MapItem(name, data[key + "/prob"], Scale(tuple(shape[:2]), tuple(shape[2:])),
                                   data[key + "/truth"]))
    return maps


def calibrate(valid: list[MapItem], cfg: CryoUNetConfig, diameter: float, extra: dict) -> float:
    """The threshold training would calibrate on these validation maps (with TTA)."""
    preds, scores, truths, working = [], [], [], []
    for it in valid:
        d = diameter / it.scale.factors[0]  # as training's LabelledMicrograph.diameter
        xy, s = _candidates(it.prob, d, cfg.pick, cfg.pick.min_score, extra)
        preds.append(xy)
        scores.append(s)
        truths.append(it.truth)
        working.append(d)
    radius = MATCH_RADIUS * float(np.mean(working))
    curve = threshold_curve(preds, scores, truths, radius)
    if len(curve.thresholds) == 0:
        return 0.5
    return float(curve.thresholds[curve.calibrated_index(cfg.train.calibration_tolerance)])


def _candidates(prob: np.ndarray, diameter: float, pick: PickConfig, min_score: float,
                extra: dict) -> tuple[np.ndarray, np.ndarray]:
    """The engine's candidate peaks (working pixels), with the variant's bench-only transforms."""
    if "smooth" in extra:
        prob = ndimage.gaussian_filter(prob, extra["smooth"] * diameter, mode="nearest")
    xy, scores = candidate_peaks(prob, diameter, pick, min_score)
    if "rescore" in extra and len(xy):
        scores = _disk_mean(prob, extra["rescore"] * diameter)[_pixel(xy, prob.shape)]
    if "split" in extra:
        xy, scores = _split(prob, diameter, pick, xy, scores, min_score, *extra["split"])
    if "tail" in extra:
        xy, scores = _tail(prob, diameter, pick, xy, scores, min_score, *extra["tail"])
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return xy[keep], scores[keep]


def _pixel(xy: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return (np.clip(np.round(xy[:, 1]).astype(int), 0, shape[0] - 1),
            np.clip(np.round(xy[:, 0]).astype(int), 0, shape[1] - 1))


def _disk_mean(prob: np.ndarray, radius: float) -> np.ndarray:
    weights = disk_footprint(radius).astype(np.float64)
    return ndimage.correlate(prob.astype(np.float64), weights / weights.sum(), mode="nearest")


def _split(prob: np.ndarray, diameter: float, pick: PickConfig, xy: np.ndarray, scores: np.ndarray,
           min_score: float, level: float, area: float) -> tuple[np.ndarray, np.ndarray]:
    """Add picks to regions above ``level`` that hold fewer picks than their area suggests."""
    labels, n = ndimage.label(prob >= level)
    if n == 0:
        return xy, scores
    sizes = np.bincount(labels.ravel())[1:]
    region_of = labels[_pixel(xy, prob.shape)] if len(xy) else np.zeros(0, int)
    added = []
    for region in range(1, n + 1):
        want = int(np.round(sizes[region - 1] / (area * np.pi * (diameter / 2) ** 2)))
        have = xy[region_of == region]
        if want >= 2 and want > len(have):
            added += list(_kmeans_centres(prob, labels == region, have, want)[len(have):])
    if not added:
        return xy, scores
    new = np.array(added)
    d, (ny, nx) = pick.edge_exclusion * diameter, prob.shape
    new = new[(new[:, 0] >= d - 0.5) & (new[:, 0] <= nx - 0.5 - d) &
              (new[:, 1] >= d - 0.5) & (new[:, 1] <= ny - 0.5 - d)]
    values = ndimage.map_coordinates(prob, [new[:, 1], new[:, 0]], order=1)
    return np.concatenate([xy, new]), np.concatenate([scores, values])


def _tail(prob: np.ndarray, diameter: float, pick: PickConfig, xy: np.ndarray, scores: np.ndarray,
          min_score: float, factor: float, nms: float) -> tuple[np.ndarray, np.ndarray]:
    """Add the peaks of plain NMS at ``nms`` diameters that ``xy`` lacks, scored ``factor`` times
    their map value (secondary maxima as low-ranked candidates)."""
    plain = dataclasses.replace(pick, nms_radius=nms, saddle_ratio=0.0)
    more, values = candidate_peaks(prob, diameter, plain, min_score)
    if len(xy) and len(more):
        new = cKDTree(xy).query(more)[0] > 0.5
        return np.concatenate([xy, more[new]]), np.concatenate([scores, factor * values[new]])
    return xy, scores


def _kmeans_centres(prob: np.ndarray, mask: np.ndarray, have: np.ndarray, want: int) -> np.ndarray:
    """``want`` centres of a region by probability-weighted k-means, the first ones started at
    ``have`` (which are returned unchanged), the rest at the farthest heavy pixels."""
    ys, xs = np.nonzero(mask)
    points, weights = np.stack([xs, ys], axis=1).astype(np.float64), prob[ys, xs].astype(np.float64)
    centres = [c for c in have] or [points[np.argmax(weights)]]
    while len(centres) < want:
        far = np.min([np.hypot(*(points - c).T) for c in centres], axis=0)
        centres.append(points[np.argmax(far * weights)])
    centres = np.array(centres)
    for _ in range(10):
        nearest = np.argmin([np.hypot(*(points - c).T) for c in centres], axis=0)
        for k in range(len(have), want):
            if (nearest == k).any():
                w = weights[nearest == k]
                centres[k] = (points[nearest == k] * w[:, None]).sum(axis=0) / w.sum()
    return centres


def score_test(test: list[MapItem], pick: PickConfig, diameter: float, threshold: float,
               extra: dict) -> dict[str, float]:
    """Scores of the test picks as ``cryounet evaluate`` computes them from the STAR files."""
    preds, scores, truths = [], [], []
    for it in test:
        if extra:
            xy, s = _candidates(it.prob, diameter / it.scale.factors[0], pick, CANDIDATE_THRESHOLD, extra)
            picks = Picks(it.scale.to_input(xy), s)
        else:  # exactly what bench/common.py's cryounet pick --threshold writes
            picks = peaks_to_picks(it.prob, None, it.scale, diameter, pick, CANDIDATE_THRESHOLD)
        preds.append(np.round(picks.xy, 2))  # the STAR file's precision
        scores.append(np.round(picks.scores, 6))
        truths.append(it.truth)
    radius = MATCH_RADIUS * diameter
    threshold = float(f"{threshold:.6f}")  # as bench/common.py passes it to cryounet evaluate
    at = evaluate([p[s >= threshold] for p, s in zip(preds, scores)], truths, radius)
    _, best = best_f1(preds, scores, truths, radius)
    return {"threshold": threshold, "precision": at.precision, "recall": at.recall, "f1": at.f1,
            "best_f1": best.f1, "ap": average_precision(preds, scores, truths, radius)}


def run_variant(maps: dict[str, list[MapItem]], base: CryoUNetConfig, diameter: float,
                variant: dict) -> dict[str, float]:
    """Calibrate on valid and score test with a variant of the model's pick settings."""
    cfg = base.updated({"pick": variant.get("pick", {})})
    extra = variant.get("bench", {})
    threshold = calibrate(maps["valid"], cfg, diameter, extra)
    return score_test(maps["test"], cfg.pick, diameter, threshold, extra)


def _line(set_name: str, label: str, variant: str, r: dict[str, float]) -> str:
    return (f"crowded {set_name} {label} {variant}: thr={r['threshold']:.3f} P={r['precision']:.3f} "
            f"R={r['recall']:.3f} F1(auto)={r['f1']:.3f} bestF1={r['best_f1']:.3f} AP={r['ap']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="SET=PATH",
                        help="a trained model folder for a set (repeat for sets and seeds)")
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), help="default: all")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "crowded")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the maps")
    parser.add_argument("--json", type=Path, help="also write every result row to this file")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"crowded: no data folder {args.data}; nothing to measure")
        return 0
    torch.set_num_threads(args.threads)
    variants = args.variants or list(VARIANTS)
    rows = []
    for spec in args.model:
        set_name, _, path = spec.partition("=")
        root, model = args.data / set_name, Path(path)
        diameter = float(json.loads((root / "meta.json").read_text())["diameter_px"])
        maps = load_maps(model, root, args.cache)
        base = load_model(model).info.config
        label = model.parent.parent.name if model.name == "model" else model.name
        for variant in variants:
            result = run_variant(maps, base, diameter, VARIANTS[variant])
            rows.append({"set": set_name, "model": str(model), "label": label, "variant": variant, **result})
            print(_line(set_name, label, variant, result), flush=True)
    _print_means(rows, variants)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _print_means(rows: list[dict], variants: list[str]) -> None:
    """Mean over the models of each set, when a set has more than one."""
    for set_name in dict.fromkeys(r["set"] for r in rows):
        for variant in variants:
            group = [r for r in rows if r["set"] == set_name and r["variant"] == variant]
            if len(group) > 1:
                mean = {k: float(np.mean([r[k] for r in group]))
                        for k in ("threshold", "precision", "recall", "f1", "best_f1", "ap")}
                print(_line(set_name, f"mean-of-{len(group)}", variant, mean), flush=True)


if __name__ == "__main__":
    sys.exit(main())
