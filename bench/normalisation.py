"""Normalisation with blank and flat regions (issue 31, item 10): picks on micrographs with zero
padding, a grid bar or denoised vacuum, by a small model trained on plain simulated micrographs.

Simulates a training, a validation and a test set (``cryounet simulate``), trains a small model on the
plain micrographs (not timed), makes the variants of the test micrographs below (each at a detector-like
offset, so that zero padding is a step as in real exports), picks every variant with this tree's
engine and, with ``--before DIR``, with the engine of another checkout (e.g. the commit before the
change: ``git worktree add DIR COMMIT``), and scores the picks at the model's calibrated threshold
(``cryounet evaluate``; ground truth: the particles whose centres stay outside the blanked region).
Also times :func:`cryounet.preprocess.preprocess` (CPU seconds, ``--threads`` OpenCV threads) on one
4096 x 4096 micrograph with particles of 50, 108 and 16 px (the last is not downsampled at all), with
and without the flat-region mask, and writes everything to one JSON file.

    python bench/normalisation.py [--before DIR] [--work /tmp/normalisation]
                                  [--output bench/results/normalisation.json] [--threads 1]

Variants: ``plain`` (0 %), ``pad30`` and ``pad50`` (the right 30 or 50 % of the columns set to 0),
``bar`` (a band of 20 % of the rows at the micrograph's minimum, a grid bar), ``vacuum`` (a disc
around a corner, 35 % of the area, at the mean + 3 standard deviations with noise of 2 % of one:
denoised vacuum).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CANDIDATE_THRESHOLD, REPO  # noqa: E402

from cryounet.config import PreprocessConfig  # noqa: E402
from cryounet.io.coordinates import read_coordinates, write_star_picks  # noqa: E402
from cryounet.io.model_folder import picking_threshold, read_model_info  # noqa: E402
from cryounet.io.mrc import read_micrograph, write_mrc  # noqa: E402
import cryounet.preprocess as prep  # noqa: E402

DIAMETER = 32.0
SIZE = 512
OFFSET = 100.0
#: Small model: about a minute of training on one thread; F1 0.96 on the plain test micrographs.
TRAIN_CONFIG = {"train": {"epochs": 10, "steps_per_epoch": 20, "batch_size": 8, "patch_size": 64,
                          "patience": 0},
                "model": {"base_channels": 8, "depth": 3}}
VARIANTS = ("plain", "pad30", "pad50", "bar", "vacuum")


def blank_region(variant: str, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the region a variant blanks (all False for ``plain``)."""
    ny, nx = shape
    region = np.zeros(shape, dtype=bool)
    if variant.startswith("pad"):
        region[:, nx - int(round(int(variant[3:]) / 100 * nx)):] = True
    elif variant == "bar":
        start = int(0.4 * ny)
        region[start:start + int(0.2 * ny)] = True
    elif variant == "vacuum":
        yy, xx = np.mgrid[0:ny, 0:nx]
        radius = np.sqrt(4 * 0.35 / np.pi)
        region = (xx / nx) ** 2 + (yy / ny) ** 2 < radius**2
    return region


def make_variant(image: np.ndarray, variant: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(micrograph, blanked region) of one variant of a simulated micrograph."""
    out = image.astype(np.float32) + np.float32(OFFSET)
    region = blank_region(variant, out.shape)
    if variant.startswith("pad"):
        out[region] = 0.0
    elif variant == "bar":
        out[region] = out.min()
    elif variant == "vacuum":
        std = float(out.std())
        out[region] = out.mean() + 3 * std + rng.normal(0, 0.02 * std, np.count_nonzero(region))
    return out, region


def write_variants(test_dir: Path, work: Path) -> dict[str, Path]:
    """Write every variant of the test micrographs (and its ground truth) to ``work/VARIANT``."""
    folders = {}
    for variant in VARIANTS:
        folder = work / variant
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for mrc in sorted(test_dir.glob("*.mrc")):
            image, region = make_variant(np.asarray(read_micrograph(mrc)), variant, rng)
            write_mrc(folder / mrc.name, image)
            truth = read_coordinates(mrc.with_suffix(".star"))
            cols = np.clip(np.round(truth.xy[:, 0]).astype(int), 0, image.shape[1] - 1)
            rows = np.clip(np.round(truth.xy[:, 1]).astype(int), 0, image.shape[0] - 1)
            write_star_picks(folder / mrc.with_suffix(".star").name, truth.subset(~region[rows, cols]))
        folders[variant] = folder
    return folders


def cli(engine: Path, args: list, threads: int) -> None:
    """Run ``python -m cryounet ARGS`` with the engine of the checkout ``engine``."""
    env = dict(os.environ, PYTHONPATH=str(engine), OMP_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-m", "cryounet", *map(str, args)], cwd=engine, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def pick_and_score(engine: Path, model: Path, folder: Path, out: Path, threshold: float, threads: int) -> dict:
    """Pick ``folder`` with ``engine`` and score it (at ``threshold``; best F1 and AP over all)."""
    picks = out / "picks"
    cli(engine, ["pick", "--micrographs", folder, "--model", model, "--output", picks, "--overwrite",
                 "--threshold", CANDIDATE_THRESHOLD, "--threads", threads, "--quiet"], threads)
    cli(engine, ["evaluate", "--picks", picks, "--truth", folder, "--diameter", DIAMETER, "--threshold",
                 f"{threshold:.6f}", "--json", out / "scores.json", "--overwrite", "--quiet"], threads)
    scores = json.loads((out / "scores.json").read_text())
    return {k: scores[k] for k in ("precision", "recall", "f1", "best_f1", "ap", "n_picks", "n_truth")
            if k in scores}


def time_preprocess(work: Path, diameter: float, repeat: int) -> dict:
    """CPU seconds (best and median of ``repeat``, the two kinds of run alternating) to preprocess one
    simulated 4096 x 4096 micrograph with the flat-region mask and with it switched off. CPU time,
    not wall time: the machine is shared, and a waiting process uses none."""
    folder = work / f"speed{diameter:g}"
    if not (folder / "mic_000.mrc").is_file():
        cli(REPO, ["simulate", "--output", folder, "--micrographs", "1", "--size", "4096", "--diameter",
                   diameter, "--particles", "300", "--seed", "1", "--overwrite", "--quiet"], 1)
    image = np.array(read_micrograph(folder / "mic_000.mrc"))
    cfg = PreprocessConfig()
    real_mask = prep.flat_mask
    kinds = {"with_mask": real_mask, "without_mask": lambda image, diameter: None}
    times: dict[str, list[float]] = {label: [] for label in kinds}
    try:
        for _ in range(repeat):
            for label, mask in kinds.items():
                prep.flat_mask = mask
                t0 = time.process_time()
                prep.preprocess(image, diameter, cfg)
                times[label].append(time.process_time() - t0)
    finally:
        prep.flat_mask = real_mask
    result = {"diameter_px": diameter,
              "working_shape": list(prep.working_scale(image.shape, diameter, cfg).working_shape)}
    for label, values in times.items():
        result[label] = {"best_cpu_s": round(min(values), 4), "median_cpu_s": round(float(np.median(values)), 4)}
    for stat in ("best_cpu_s", "median_cpu_s"):
        result[f"added_{stat}"] = round(result["with_mask"][stat] - result["without_mask"][stat], 4)
    return result


def real_data_change(data: Path) -> dict:
    """Per shared set: the share of flat pixels found and the largest change of the normalised working
    images of all its micrographs, against normalisation over the whole image."""
    result = {}
    cfg = PreprocessConfig()
    real_mask = prep.flat_mask
    for meta in sorted(data.glob("*/meta.json")):
        diameter = json.loads(meta.read_text())["diameter_px"]
        flat, change, count = 0.0, 0.0, 0
        for mrc in sorted(meta.parent.glob("*/*.mrc")):
            image, masks = read_micrograph(mrc), []
            try:
                prep.flat_mask = lambda image, diameter: masks.append(real_mask(image, diameter)) or masks[-1]
                new, _ = prep.preprocess(image, diameter, cfg)
                prep.flat_mask = lambda image, diameter: None
                old, _ = prep.preprocess(image, diameter, cfg)
            finally:
                prep.flat_mask = real_mask
            flat = max(flat, 0.0 if masks[0] is None else float(masks[0].mean()))
            change = max(change, float(np.abs(new - old).max()))
            count += 1
        result[meta.parent.name] = {"micrographs": count, "largest_flat_share": flat,
                                    "largest_abs_change": change}
    return result


def train_model(work: Path, threads: int) -> Path:
    """Simulate the data and train the small model (kept between runs)."""
    model = work / "model"
    if (model / "model.safetensors").is_file():
        return model
    for name, count, seed in (("train", 8, 11), ("valid", 2, 12), ("test", 4, 13)):
        cli(REPO, ["simulate", "--output", work / name, "--micrographs", count, "--size", SIZE, "--diameter",
                   DIAMETER, "--seed", seed, "--overwrite", "--quiet"], threads)
    config = work / "train.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    cli(REPO, ["train", "--micrographs", work / "train", "--coordinates", work / "train", "--valid-micrographs",
               work / "valid", "--valid-coordinates", work / "valid", "--diameter", DIAMETER, "--output", model,
               "--config", config, "--seed", 0, "--threads", threads, "--overwrite", "--quiet"], threads)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="checkout whose engine gives the 'before' picks")
    parser.add_argument("--work", type=Path, default=Path("/tmp/normalisation"))
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "normalisation.json")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="the shared real sets (their micrographs' normalised images are compared)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=15, help="timing repeats")
    args = parser.parse_args()
    model = train_model(args.work, args.threads)
    info = read_model_info(model)
    threshold = picking_threshold([info], info.config.pick.tta, configured=info.config.pick.threshold)
    folders = write_variants(args.work / "test", args.work / "variants")
    engines = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    probe = {}
    for variant, folder in folders.items():
        probe[variant] = {}
        for label, engine in engines.items():
            out = args.work / "picks" / label / variant
            out.mkdir(parents=True, exist_ok=True)
            probe[variant][label] = pick_and_score(engine, model, folder, out, threshold, args.threads)
            print(f"normalisation {variant} {label}: " + " ".join(
                f"{k}={v:.3f}" for k, v in probe[variant][label].items() if isinstance(v, float)), flush=True)
    real = real_data_change(args.data) if args.data.is_dir() else {}
    for name, row in real.items():
        print(f"normalisation {name}: {row}", flush=True)
    cv2.setNumThreads(args.threads)
    timing = [time_preprocess(args.work, d, args.repeat) for d in (50.0, 108.0, 16.0)]
    for row in timing:
        print(f"normalisation timing d={row['diameter_px']:g} (working {row['working_shape']}): added "
              f"{row['added_best_cpu_s']:.4f} s (best), {row['added_median_cpu_s']:.4f} s (median) CPU", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    result = {"command": "python " + " ".join(sys.argv), "machine": f"2-core {platform.machine()} VM, shared by "
              "parallel jobs", "date": datetime.date.today().isoformat(), "code": commit[:7],
              "id": "normalisation", "title": "Normalisation with blank and flat regions",
              "threshold": threshold, "train_config": TRAIN_CONFIG, "probe": probe, "preprocess_4k": timing,
              "real_data": real}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
