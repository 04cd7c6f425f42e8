"""Downstream check with RELION: do CryoUNet's "false positives" look like particles?

Label noise makes precision on the CryoPPP test micrographs an imperfect yardstick: a pick with no
annotated centre within 0.5 diameters counts as false even where the annotators missed a particle.
This benchmark asks RELION instead. For each set (``../shared/data``, see its README):

1. pick ``test`` with a trained model (``--model SET=FOLDER``, or one trained here as in
   ``bench/accuracy.py``) and keep the picks ``cryounet pick --threshold auto`` writes;
2. split them by the README's scoring rule (per micrograph, a maximum one-to-one matching within
   0.5 x diameter, the engine's :func:`cryounet.evaluation.metrics.count_matches`) into groups:
   ``truth`` (every annotation), ``picks`` (every pick), ``false_pos`` (picks left unmatched),
   ``missed`` (annotations left unmatched) and ``control`` (random background positions more than
   one diameter from any pick or annotation, away from the edges, as many as there are false
   positives where the micrograph has room, seeded);
3. extract ``truth``, ``picks`` and ``control`` with ``relion_preprocess`` (contrast inverted, so
   that the dark particles of these micrographs become RELION's white ones; background
   normalised; rescaled to a common working box) and classify their union in ONE 2D
   classification (``relion_refine``, no CTF: none is known). ``false_pos`` and ``missed`` are
   subsets of ``picks`` and ``truth``; every particle's group is kept through its stack's folder
   and its micrograph and coordinates;
4. call a class *good* by a rule that looks only at the two reference groups, never at the groups
   being judged: the class holds at least ``--min-truth-share`` of the annotations, and the
   annotations are at least ``--enrichment`` times as likely as random background to land in it
   (``share of truth >= enrichment x share of control``); optionally also its estimated resolution
   must be ``--max-resolution`` A or better. Random background is the null hypothesis "no
   particle here", so a class that background avoids while annotations fill it is a particle
   class; a class that background fills as readily as annotations is noise or junk, and a class
   few annotations reach (carbon edges, ice) is not a particle class either.
5. report, per group, the share of its particles in good classes, and estimate how many false
   positives are real particles. Each of them lands in a good class with the annotations' rate
   if it is a particle and with the background's rate if not, so a fraction
   ``f = (s_fp - s_control) / (s_truth - s_control)`` of them are particles (``mixture``); the
   plainer ``(s_fp - s_control) x |false_pos|`` (``excess``) is a lower estimate. Precision with
   those counted as true is ``(TP + estimate) / picks``. A third figure needs no good/bad call:
   the ``f`` for which ``f x truth + (1 - f) x control`` best fits (least squares) the false
   positives' spread over all classes (``composition_fraction``). All three are only as sharp as
   the classification separates ``truth`` from ``control``: when few annotations reach a good
   class, ``s_truth - s_control`` is small and ``mixture`` is noisy (it is clipped to 0-1).

Class averages go to ``docs/downstream/SET-classes.png``, work files to
``bench/results/downstream/SET``, results to ``bench/results/downstream/results.json``.

The pixel size is not recorded: both sets are taken at an assumed 5.36 A/px (EMPIAR-10028's
1.34 A/px binned 4x to 1024 px; 10947 gets the same nominal value, so that one Angstrom figure
means the same number of pixels in both sets). Resolutions are also given in micrograph pixels
(Angstrom / assumed pixel size), which does not depend on the assumption.

    python bench/downstream.py [--data ../shared/data] [--sets cryoppp-10028 ...]
                               [--model SET=FOLDER ...] [--classes 8] [--iterations 20] [--box 48]
                               [--enrichment 2] [--min-truth-share 0.02] [--max-resolution 0]
                               [--seed 0] [--threads 2] [--output bench/results/downstream]
                               [--docs docs/downstream]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, REPO, pick_and_score, run  # noqa: E402

from cryounet.evaluation.metrics import MATCH_RADIUS, count_matches  # noqa: E402
from cryounet.io.atomic import atomic_path, write_json, write_text_atomic  # noqa: E402
from cryounet.io.coordinates import box_size_for_diameter, find_coordinate_file, read_coordinates  # noqa: E402
from cryounet.io.model_folder import check_model_folder  # noqa: E402
from cryounet.io.mrc import micrograph_shape  # noqa: E402

#: Assumed pixel size (A/px) of each set's 1024 px micrographs (not recorded; see the docstring).
ASSUMED_ANGPIX = {"cryoppp-10028": 5.36, "cryoppp-10947": 5.36}
DEFAULT_ANGPIX = 5.36
#: Groups in the order they are reported; EXTRACTED are the ones extracted (the others are subsets).
GROUPS = ("truth", "picks", "false_pos", "missed", "control")
EXTRACTED = ("truth", "picks", "control")
#: Background positions lie more than this many diameters from any pick or annotation ...
CONTROL_CLEARANCE = 1.0
#: ... and at least this many diameters from each other.
CONTROL_SPACING = 0.5
#: Mask diameter of the 2D classification, in particle diameters.
MASK_FACTOR = 1.2
#: A good class counts for a group's "best resolution" when it holds at least this share of the group.
RESOLUTION_MIN_SHARE = 0.05
RELION_TOOLS = ("relion_preprocess", "relion_star_handler", "relion_refine")


# --------------------------------------------------------------------------------- pure helpers
def split_matches(picks: np.ndarray, scores: np.ndarray, truth: np.ndarray,
                  radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (picks matched, annotations matched) of one maximum one-to-one matching.

    Built from :func:`count_matches` alone, so the number of pairs is the engine's by construction:
    a pick is dropped (called unmatched) when the maximum matching keeps its size without it,
    trying the lowest-scored picks first; then the same for annotations, farthest from a kept pick
    first. Every pick and annotation left over is in a perfect matching of the two rest sets.
    """
    picks = np.asarray(picks, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    total = count_matches(picks, truth, radius)
    pick_kept = _reduce(np.ones(len(picks), bool), np.argsort(scores, kind="stable"),
                        lambda keep: count_matches(picks[keep], truth, radius), total)
    kept = picks[pick_kept]
    if len(kept) and len(truth):
        far_first = np.argsort(-cKDTree(kept).query(truth)[0], kind="stable")
    else:
        far_first = np.arange(len(truth))
    truth_kept = _reduce(np.ones(len(truth), bool), far_first,
                         lambda keep: count_matches(kept, truth[keep], radius), total)
    return pick_kept, truth_kept


def _reduce(keep: np.ndarray, order: np.ndarray, size, total: int) -> np.ndarray:
    """Drop each index of ``order`` in turn from ``keep`` where ``size(keep)`` stays ``total``."""
    for i in order:
        if keep.sum() == total:
            break
        keep[i] = False
        if size(keep) < total:
            keep[i] = True
    return keep


def background_positions(avoid: np.ndarray, n: int, shape: tuple[int, int], clearance: float,
                         margin: float, spacing: float, rng: np.random.Generator,
                         step: int = 2) -> np.ndarray:
    """Up to ``n`` random ``(x, y)`` more than ``clearance`` from every point of ``avoid``, at least
    ``margin`` from the edges and ``spacing`` from each other (fewer where there is no room)."""
    ny, nx = shape
    ys, xs = np.mgrid[math.ceil(margin):ny - margin:step, math.ceil(margin):nx - margin:step]
    candidates = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
    avoid = np.asarray(avoid, dtype=np.float64).reshape(-1, 2)
    if len(avoid) and len(candidates):
        candidates = candidates[cKDTree(avoid).query(candidates)[0] > clearance]
    chosen: list[np.ndarray] = []
    for point in candidates[rng.permutation(len(candidates))]:
        if len(chosen) >= n:
            break
        if not chosen or np.min(np.hypot(*(np.asarray(chosen) - point).T)) >= spacing:
            chosen.append(point)
    return np.asarray(chosen, dtype=np.float64).reshape(-1, 2)


@dataclass
class ClassStats:
    """One 2D class: RELION's figures and how many particles of each group it holds."""

    number: int
    distribution: float
    resolution: float
    counts: dict[str, int] = field(default_factory=dict)
    good: bool = False


def good_classes(classes: Sequence[ClassStats], totals: dict[str, int], enrichment: float,
                 min_truth_share: float, max_resolution: float = 0.0) -> list[int]:
    """Numbers of the good classes (the rule of the module docstring, step 4)."""
    good = []
    for c in classes:
        truth = c.counts.get("truth", 0) / max(totals.get("truth", 0), 1)
        control = c.counts.get("control", 0) / max(totals.get("control", 0), 1)
        if truth >= min_truth_share and truth >= enrichment * control and \
                (max_resolution <= 0 or c.resolution <= max_resolution):
            good.append(c.number)
    return good


def group_summary(classes: Sequence[ClassStats], group: str, total: int) -> dict:
    """Share of ``group`` in good classes, the best resolution of a good class holding at least
    ``RESOLUTION_MIN_SHARE`` of it, and the class holding most of it."""
    if total == 0:
        return {"n": 0, "good_share": None, "best_good_resolution": None, "main_class": None}
    in_good = sum(c.counts.get(group, 0) for c in classes if c.good)
    res = [c.resolution for c in classes if c.good and c.counts.get(group, 0) >= RESOLUTION_MIN_SHARE * total]
    main = max(classes, key=lambda c: (c.counts.get(group, 0), -c.number))
    return {"n": total, "good_share": in_good / total, "best_good_resolution": min(res) if res else None,
            "main_class": {"number": main.number, "share": main.counts.get(group, 0) / total,
                           "resolution": main.resolution, "good": main.good}}


def real_particle_estimate(summary: dict[str, dict], tp: int, n_picks: int) -> dict:
    """How many false positives look like particles, and precision if those counted as true."""
    s_fp, s_truth, s_control = (summary[g]["good_share"] for g in ("false_pos", "truth", "control"))
    n_fp = summary["false_pos"]["n"]
    if s_fp is None or s_truth is None or s_control is None:
        return {"excess": None, "mixture": None, "precision": tp / n_picks if n_picks else None}
    excess = max(0.0, s_fp - s_control) * n_fp
    spread = s_truth - s_control
    fraction = min(1.0, max(0.0, (s_fp - s_control) / spread)) if spread > 0 else None
    mixture = None if fraction is None else fraction * n_fp
    out = {"excess": excess, "mixture": mixture, "mixture_fraction": fraction,
           "precision": tp / n_picks if n_picks else None}
    out["precision_excess"] = (tp + excess) / n_picks if n_picks else None
    out["precision_mixture"] = (tp + mixture) / n_picks if n_picks and mixture is not None else None
    return out


def composition_fit(classes: Sequence[ClassStats], totals: dict[str, int]) -> float | None:
    """Fraction ``f`` (0-1) for which ``f x truth + (1 - f) x control`` best fits (least squares)
    the false positives' spread over ALL classes: a figure free of the good-class rule."""
    if not all(totals.get(g) for g in ("false_pos", "truth", "control")):
        return None
    fp, truth, control = (np.array([c.counts.get(g, 0) / totals[g] for c in classes])
                          for g in ("false_pos", "truth", "control"))
    span = truth - control
    if not span.any():
        return None
    return float(np.clip(np.dot(fp - control, span) / np.dot(span, span), 0.0, 1.0))


def finite_or_none(value):
    """JSON-safe copy of ``value``: infinite or NaN floats (RELION's unresolved classes) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ grouping
@dataclass
class Micrograph:
    """One test micrograph's groups (``(N, 2)`` arrays of x, y in its pixels)."""

    path: Path
    groups: dict[str, np.ndarray]
    tp: int


def build_groups(test_dir: Path, picks_dir: Path, threshold: float, diameter: float, box: int,
                 rng: np.random.Generator) -> list[Micrograph]:
    """Split every test micrograph's picks (score >= ``threshold``) and annotations into groups."""
    out = []
    for mrc in sorted(test_dir.glob("*.mrc")):
        truth_file = find_coordinate_file(mrc.stem, test_dir)
        pick_file = find_coordinate_file(mrc.stem, picks_dir)
        if truth_file is None:
            continue
        if pick_file is None:
            sys.exit(f"downstream: {picks_dir} has no picks for {mrc.name}")
        truth = read_coordinates(truth_file).xy
        picks = read_coordinates(pick_file)
        scores = picks.scores if picks.scores is not None else np.ones(len(picks))
        keep = scores >= threshold
        xy, scores = picks.xy[keep], scores[keep]
        pick_ok, truth_ok = split_matches(xy, scores, truth, MATCH_RADIUS * diameter)
        control = background_positions(np.vstack([truth, xy]), int((~pick_ok).sum()), micrograph_shape(mrc),
                                       CONTROL_CLEARANCE * diameter, box / 2, CONTROL_SPACING * diameter, rng)
        out.append(Micrograph(mrc, {"truth": truth, "picks": xy, "false_pos": xy[~pick_ok],
                                    "missed": truth[~truth_ok], "control": control}, int(pick_ok.sum())))
    if not out:
        sys.exit(f"downstream: no micrograph with annotations in {test_dir}")
    return out


def coordinate_key(stem: str, x: float, y: float) -> tuple[str, int, int]:
    """Key of a position as written to (and read back from) a STAR file with 2 decimals."""
    return stem, int(round(float(x) * 100)), int(round(float(y) * 100))


# ------------------------------------------------------------------------------------ RELION
def relion_version() -> str | None:
    """RELION's version line, or None when a needed RELION program is not on PATH."""
    if any(shutil.which(tool) is None for tool in RELION_TOOLS):
        return None
    out = subprocess.run(["relion_refine", "--version"], capture_output=True, text=True).stdout
    line = next((x for x in out.splitlines() if "version" in x.lower()), "RELION (version unknown)")
    return line.split(":", 1)[-1].strip()


def relion(cmd: Sequence[str], cwd: Path, log: Path) -> float:
    """Run a RELION program in ``cwd`` (output appended to ``log``); return its wall seconds."""
    t0 = time.monotonic()
    with open(log, "a") as out:
        out.write("$ (cd " + str(cwd) + ") " + " ".join(map(str, cmd)) + "\n")
        out.flush()
        code = subprocess.run(list(map(str, cmd)), cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"downstream: {cmd[0]} failed (exit {code}), see {log}")
    return time.monotonic() - t0


def star_loop(rows: Sequence[Sequence[str]], labels: Sequence[str], block: str = "") -> str:
    """A STAR data block with one loop."""
    lines = ["", "# version 30001", "", f"data_{block}", "", "loop_"]
    lines += [f"_{label} #{i}" for i, label in enumerate(labels, 1)]
    lines += [" ".join(row) for row in rows]
    return "\n".join(lines) + "\n\n"


def write_relion_inputs(work: Path, micrographs: Sequence[Micrograph], angpix: float) -> None:
    """Micrograph links, per-group coordinate files and the micrographs STAR (RELION 3.1 format)."""
    mics = work / "Micrographs"
    mics.mkdir(parents=True)
    for m in micrographs:
        (mics / m.path.name).symlink_to(m.path.resolve())
        for group in EXTRACTED:
            rows = [[f"{x:.2f}", f"{y:.2f}"] for x, y in m.groups[group]]
            write_text_atomic(mics / f"{m.path.stem}_{group}.star",
                              star_loop(rows, ["rlnCoordinateX", "rlnCoordinateY"]))
    optics = star_loop([["opticsGroup1", "1", f"{angpix}", "300", "2.7", "0.1"]],
                       ["rlnOpticsGroupName", "rlnOpticsGroup", "rlnMicrographPixelSize", "rlnVoltage",
                        "rlnSphericalAberration", "rlnAmplitudeContrast"], "optics")
    rows = [[f"Micrographs/{m.path.name}", "1"] for m in micrographs]
    write_text_atomic(work / "micrographs.star",
                      optics + star_loop(rows, ["rlnMicrographName", "rlnOpticsGroup"], "micrographs"))


def extract_and_classify(work: Path, box: int, working_box: int, mask_angstrom: float, args: argparse.Namespace,
                         log: Path) -> dict[str, float]:
    """Extract every group, combine them, and run the 2D classification; returns seconds per stage."""
    seconds = {"extract": 0.0}
    bg_radius = round(0.375 * working_box)  # RELION's default: 75 % of the box radius
    for group in EXTRACTED:
        cmd = ["relion_preprocess", "--i", "micrographs.star", "--coord_dir", "./",
               "--coord_suffix", f"_{group}.star", "--part_dir", f"Particles/{group}/",
               "--part_star", f"{group}.star", "--extract", "--extract_size", box, "--norm",
               "--bg_radius", bg_radius, "--invert_contrast"]
        if working_box != box:
            cmd += ["--scale", working_box]
        seconds["extract"] += relion(cmd, work, log)
    seconds["combine"] = relion(["relion_star_handler", "--combine", "--i",
                                 " ".join(f"{g}.star" for g in EXTRACTED), "--o", "all.star"], work, log)
    (work / "Class2D").mkdir()
    seconds["classify"] = relion(
        ["relion_refine", "--i", "all.star", "--o", "Class2D/run", "--K", args.classes, "--iter", args.iterations,
         "--tau2_fudge", "2", "--particle_diameter", f"{mask_angstrom:.1f}", "--zero_mask", "--flatten_solvent",
         "--norm", "--scale", "--j", args.threads, "--pool", "30", "--dont_combine_weights_via_disc",
         "--random_seed", args.seed], work, log)
    return seconds


def read_star_blocks(path: Path) -> dict:
    """STAR blocks of ``path`` as pandas tables (a clear error naming the file otherwise)."""
    import starfile
    if not path.is_file():
        sys.exit(f"downstream: RELION did not write {path}")
    try:
        return starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises assorted parser errors
        sys.exit(f"downstream: cannot read {path}: {exc}")


def class_table(work: Path, iteration: int, micrographs: Sequence[Micrograph]) -> list[ClassStats]:
    """Per-class RELION figures and group counts of the final iteration."""
    stem = work / "Class2D" / f"run_it{iteration:03d}"
    model = read_star_blocks(Path(f"{stem}_model.star"))["model_classes"]
    data = read_star_blocks(Path(f"{stem}_data.star"))["particles"]
    classes = [ClassStats(i + 1, float(row.rlnClassDistribution), float(row.rlnEstimatedResolution),
                          {g: 0 for g in GROUPS}) for i, row in enumerate(model.itertuples())]
    subsets = {"picks": ("false_pos", {}), "truth": ("missed", {})}
    for m in micrographs:
        for subset, keys in subsets.values():
            keys.update({coordinate_key(m.path.stem, x, y): True for x, y in m.groups[subset]})
    for row in data.itertuples():
        group = str(row.rlnImageName).split("@", 1)[1].split("/")[1]
        if group not in EXTRACTED:
            sys.exit(f"downstream: {stem}_data.star: particle {row.rlnImageName} is in no known group")
        counts = classes[int(row.rlnClassNumber) - 1].counts
        counts[group] += 1
        if group in subsets:
            subset, keys = subsets[group]
            if coordinate_key(Path(row.rlnMicrographName).stem, row.rlnCoordinateX, row.rlnCoordinateY) in keys:
                counts[subset] += 1
    return classes


# ------------------------------------------------------------------------------------ montage
def write_montage(path: Path, class_stack: Path, classes: Sequence[ClassStats], title: str,
                  angpix: float) -> None:
    """PNG of the class averages (good ones first, then by size), each labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mrcfile

    with mrcfile.open(class_stack, permissive=True) as mrc:
        images = np.asarray(mrc.data, dtype=np.float32).reshape(-1, mrc.data.shape[-2], mrc.data.shape[-1])
    order = sorted(classes, key=lambda c: (not c.good, -c.distribution))
    cols = min(len(order), 5)
    rows = math.ceil(len(order) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.35 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, c in zip(axes.ravel(), order):
        image = images[c.number - 1]
        lo, hi = np.percentile(image, [1, 99])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="bilinear")
        shares = " ".join(f"{g[0].upper()}{c.counts.get(g, 0)}" for g in ("truth", "false_pos", "control"))
        res = f"{c.resolution:.0f} A ({c.resolution / angpix:.1f} px)" if math.isfinite(c.resolution) else "no res."
        ax.set_title(f"class {c.number}: {'GOOD' if c.good else 'bad'}\n{100 * c.distribution:.1f} %, {res}"
                     f"\n{shares}", fontsize=7,
                     color="darkgreen" if c.good else "darkred")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------ driver
def parse_models(items: Sequence[str]) -> dict[str, Path]:
    """``SET=FOLDER`` options as a dict."""
    models = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            sys.exit(f"downstream: --model takes SET=FOLDER, got {item!r}")
        models[name] = Path(folder)
    return models


def train_model(root: Path, diameter: float, model: Path, seed: int, log: Path) -> float:
    """Train on ``train`` with ``valid`` for validation, as bench/accuracy.py does; returns seconds."""
    cmd = PY + ["train", "--micrographs", root / "train", "--coordinates", root / "train",
                "--valid-micrographs", root / "valid", "--valid-coordinates", root / "valid",
                "--diameter", diameter, "--output", model, "--overwrite", "--device", "cpu", "--seed", seed]
    return run(cmd, log)[0]


def measure_set(name: str, root: Path, model: Path | None, version: str, args: argparse.Namespace) -> dict:
    """The whole check for one set; returns its JSON record."""
    t0 = time.monotonic()
    diameter = float(json.loads((root / "meta.json").read_text())["diameter_px"])
    out = args.output / name
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    log.write_text("")
    train_s = None
    if model is None:
        model = out / "model"
        train_s = train_model(root, diameter, model, args.seed, log)
    problems = check_model_folder(model)
    if problems:
        sys.exit(f"downstream: {'; '.join(problems)}")
    scores, pick_s, _ = pick_and_score([model], root / "test", diameter, out, log)
    box = box_size_for_diameter(diameter)
    working_box = args.box if args.box > 0 else box
    angpix = ASSUMED_ANGPIX.get(name, DEFAULT_ANGPIX)
    particle_angpix = angpix * box / working_box
    micrographs = build_groups(root / "test", out / "picks", scores["threshold"], diameter, box,
                               np.random.default_rng(args.seed))
    tp = sum(m.tp for m in micrographs)
    n_picks = sum(len(m.groups["picks"]) for m in micrographs)
    if n_picks != scores["n_picks"] or tp != round(scores["precision"] * n_picks):
        sys.exit(f"downstream: {out / 'scores.json'}: the split ({tp} of {n_picks} picks matched) "
                 f"disagrees with cryounet evaluate ({scores['precision']:.4f} of {scores['n_picks']})")
    work = out / "relion"
    if work.exists():
        shutil.rmtree(work)
    write_relion_inputs(work, micrographs, angpix)
    seconds = extract_and_classify(work, box, working_box, MASK_FACTOR * diameter * angpix, args, log)
    classes = class_table(work, args.iterations, micrographs)
    totals = {g: sum(c.counts[g] for c in classes) for g in GROUPS}
    good = good_classes(classes, totals, args.enrichment, args.min_truth_share, args.max_resolution)
    for c in classes:
        c.good = c.number in good
    summary = {g: group_summary(classes, g, totals[g]) for g in GROUPS}
    for g in GROUPS:
        summary[g]["n_positions"] = sum(len(m.groups[g]) for m in micrographs)
    estimate = real_particle_estimate(summary, tp, n_picks)
    estimate["composition_fraction"] = composition_fit(classes, totals)
    stack = work / "Class2D" / f"run_it{args.iterations:03d}_classes.mrcs"
    image = args.docs / f"{name}-classes.png"
    write_montage(image, stack, classes,
                  f"{name}: RELION {version} 2D classes, K={args.classes}, {args.iterations} iterations; "
                  f"good = truth share >= {args.min_truth_share:g} and >= {args.enrichment:g} x control share"
                  f"\nT/F/C: particles of the annotations / false positives / random background in the class",
                  angpix)
    return {"set": name, "model": str(model), "threshold": scores["threshold"], "diameter_px": diameter,
            "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"], "tp": tp,
            "n_picks": n_picks, "n_truth": scores["n_truth"], "groups": summary, "estimate": estimate,
            "classes": [vars(c) for c in classes], "good_classes": good,
            "parameters": {"classes": args.classes, "iterations": args.iterations, "extract_box": box,
                           "working_box": working_box, "assumed_angpix": angpix,
                           "particle_angpix": particle_angpix, "mask_angstrom": MASK_FACTOR * diameter * angpix,
                           "enrichment": args.enrichment, "min_truth_share": args.min_truth_share,
                           "max_resolution": args.max_resolution, "seed": args.seed, "threads": args.threads,
                           "control_clearance": CONTROL_CLEARANCE, "control_spacing": CONTROL_SPACING},
            "relion": version, "image": str(image.relative_to(REPO)) if image.is_relative_to(REPO) else str(image),
            "seconds": {"train": train_s, "pick": pick_s, **seconds, "total": time.monotonic() - t0},
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s)"}


def report(row: dict) -> None:
    """One line per group, then one for the estimate (the benchmarks' print style)."""
    angpix = row["parameters"]["assumed_angpix"]

    def res(value: float | None) -> str:
        return "-" if value is None or not math.isfinite(value) else f"{value:.0f}A({value / angpix:.1f}px)"

    for g in GROUPS:
        s = row["groups"][g]
        if not s["n"]:
            print(f"downstream {row['set']} {g}: n=0")
            continue
        main = s["main_class"]
        print(f"downstream {row['set']} {g}: n={s['n']} good={s['good_share']:.3f} "
              f"best_good_res={res(s['best_good_resolution'])} main=class{main['number']} "
              f"({main['share']:.2f}, {res(main['resolution'])}, {'good' if main['good'] else 'bad'})", flush=True)
    e = row["estimate"]

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    n_fp = row["groups"]["false_pos"]["n"]
    print(f"downstream {row['set']}: P={num(e.get('precision'), '.3f')}; of {n_fp} false positives "
          f"~{num(e.get('mixture'), '.0f')} (mixture; excess {num(e.get('excess'), '.0f')}; composition fit "
          f"{num(e.get('composition_fraction'), '.2f')}) look like particles -> "
          f"P={num(e.get('precision_mixture'), '.3f')} (excess {num(e.get('precision_excess'), '.3f')}); "
          f"good classes {row['good_classes']}; RELION {row['seconds']['classify'] / 60:.1f} min, "
          f"total {row['seconds']['total'] / 60:.1f} min", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="*", help="set names (default: every set in --data)")
    parser.add_argument("--model", action="append", default=[], metavar="SET=FOLDER",
                        help="trained model folder for a set (repeatable; default: train one)")
    parser.add_argument("--classes", type=int, default=8, help="number of 2D classes (K)")
    parser.add_argument("--iterations", type=int, default=20, help="2D classification iterations")
    parser.add_argument("--box", type=int, default=48,
                        help="working box in px: particles are extracted at 1.5 diameters and rescaled "
                        "to this (even; 0: no rescaling)")
    parser.add_argument("--enrichment", type=float, default=2.0,
                        help="good class: share of the annotations >= this x share of the random background")
    parser.add_argument("--min-truth-share", type=float, default=0.02,
                        help="good class: holds at least this share of the annotations")
    parser.add_argument("--max-resolution", type=float, default=0.0,
                        help="good class: estimated resolution this many A or better (0: not used)")
    parser.add_argument("--seed", type=int, default=0, help="seed of training, background positions and RELION")
    parser.add_argument("--threads", type=int, default=2, help="relion_refine --j")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "downstream")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "downstream",
                        help="folder for the class-average montages")
    args = parser.parse_args()
    if args.box % 2:
        parser.error("--box must be even")
    if not args.data.is_dir():
        print(f"downstream: no data folder {args.data}; nothing to measure")
        return 0
    version = relion_version()
    if version is None:
        print(f"downstream: RELION ({', '.join(RELION_TOOLS)}) not found on PATH; nothing to measure")
        return 0
    models = parse_models(args.model)
    sets = args.sets or sorted(p.name for p in args.data.iterdir() if (p / "meta.json").is_file())
    unknown = sorted(set(models) - set(sets))
    if unknown:
        sys.exit(f"downstream: --model for a set not measured: {', '.join(unknown)}")
    rows = []
    for name in sets:
        if not (args.data / name / "meta.json").is_file():
            sys.exit(f"downstream: {args.data / name / 'meta.json'} does not exist")
        rows.append(measure_set(name, args.data / name, models.get(name), version, args))
        report(rows[-1])
    summary = args.output / "results.json"
    if summary.is_file():
        rows = [r for r in json.loads(summary.read_text()) if r["set"] not in sets] + rows
    write_json(summary, finite_or_none(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
