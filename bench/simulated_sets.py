"""Write K simulated training sets, varied from one seed, in the layout of ../shared/data.

Each set is ``ROOT/NAME/meta.json`` (``diameter_px``, ``"simulated": true``, the simulation
config and per-micrograph particle counts, defoci, carbon edges and contamination) and
``ROOT/NAME/train/mic_NNN.mrc`` + ``.star``. Across sets the protein blob model (the simulation
seed), diameter, particle density, SNR, defocus range, pixel size, ice-gradient strength, carbon
edges and contamination vary; the last ``--negative-sets`` sets have no particles at all (carbon
and contamination only, empty coordinate files). With ``--shell-fraction F`` each particle set's
protein is a hollow shell (rings in projection, as apoferritin's) with probability F, drawn from a
stream of its own: every other setting is the same as without it, so the two can be compared.
Train on them with ``"validate": false`` entries in a ``cryounet train --datasets`` list.

    python bench/simulated_sets.py OUT [--sets 6] [--micrographs 6] [--negative-sets 1] [--seed 0]
        [--shell-fraction 0]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryounet.simulate import SimulationConfig, simulate_dataset  # noqa: E402

#: Ranges the sets are drawn from (diameters and SNRs log-uniform).
DIAMETER_PX = (40.0, 120.0)
SNR = (0.02, 0.1)
#: Fraction of the micrograph area the requested particles would cover.
COVERAGE = (0.05, 0.35)
#: Mixed into the seed of the shape draws, so they leave every other draw as it was.
_SHAPE_STREAM = 0x5E11


def set_config(index: int, negative: bool, micrographs: int, size: int, rng: np.random.Generator) -> SimulationConfig:
    """The simulation settings of set ``index`` (particle-free when ``negative``)."""
    diameter = round(math.exp(rng.uniform(*np.log(DIAMETER_PX))), 1)
    coverage = rng.uniform(*COVERAGE)
    particles = int(coverage * size * size / (math.pi * diameter * diameter / 4))
    defocus_low = rng.uniform(0.8, 2.0)
    contamination_max = int(rng.integers(2, 6))
    return SimulationConfig(
        n_micrographs=micrographs,
        size=size,
        diameter_px=diameter,
        particles_per_micrograph=0 if negative else max(particles, 1),
        snr=round(math.exp(rng.uniform(*np.log(SNR))), 4),
        pixel_size=round(rng.uniform(1.0, 2.5), 2),
        defocus_range_um=(round(defocus_low, 2), round(defocus_low + rng.uniform(0.3, 1.5), 2)),
        background_strength=round(rng.uniform(0.2, 1.5), 2),
        carbon_probability=round(rng.uniform(0.5, 0.8) if negative else rng.uniform(0.15, 0.4), 2),
        carbon_darkness=round(rng.uniform(0.4, 1.2), 2),
        contamination_range=(1 if negative else int(rng.integers(0, 2)), contamination_max),
        contamination_darkness=round(rng.uniform(2.5, 5.0), 2),
        seed=int(rng.integers(0, 2**31 - 1)) + index,
    )


def write_set(cfg: SimulationConfig, folder: Path) -> dict:
    """Simulate one set into ``folder/train`` and write ``folder/meta.json``; returns the meta."""
    train = folder / "train"
    simulate_dataset(cfg, train)
    inner = train / "meta.json"
    meta = json.loads(inner.read_text())
    inner.unlink()  # the set's meta.json sits beside train/, as in ../shared/data
    meta = {"diameter_px": meta["diameter_px"], "simulated": True, **meta}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write the sets into")
    parser.add_argument("--sets", type=int, default=6, help="number of sets (default 6)")
    parser.add_argument("--micrographs", type=int, default=6, help="micrographs per set (default 6)")
    parser.add_argument("--negative-sets", type=int, default=1,
                        help="how many of the sets are particle-free (default 1)")
    parser.add_argument("--size", type=int, default=1024, help="micrograph side in px (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every choice (default 0)")
    parser.add_argument("--shell-fraction", type=float, default=0.0,
                        help="chance that a set's protein is a hollow shell (default 0: all blobs)")
    parser.add_argument("--overwrite", action="store_true", help="replace sets of the same names")
    args = parser.parse_args()
    if not 1 <= args.sets or not 0 <= args.negative_sets < args.sets or args.micrographs < 1:
        parser.error("need --sets >= 1, 0 <= --negative-sets < --sets and --micrographs >= 1")
    if not 0 <= args.shell_fraction <= 1:
        parser.error("--shell-fraction must be between 0 and 1")
    rng = np.random.default_rng(args.seed)
    plans = []
    for i in range(args.sets):
        negative = i >= args.sets - args.negative_sets
        cfg = set_config(i, negative, args.micrographs, args.size, rng)
        shell_draw = np.random.default_rng([args.seed, i, _SHAPE_STREAM]).uniform()
        if not negative and shell_draw < args.shell_fraction:
            cfg.shape = "shell"
        name = f"sim-{i:02d}-{'negatives' if negative else f'd{cfg.diameter_px:.0f}'}"
        name += "-shell" if cfg.shape == "shell" else ""
        plans.append((name, cfg))
    existing = [name for name, _ in plans if (args.root / name).exists()]
    if existing and not args.overwrite:
        parser.error(f"{args.root} already holds {', '.join(existing)} (--overwrite replaces them)")
    t0 = time.monotonic()
    for name, cfg in plans:
        folder = args.root / name
        if folder.exists():
            shutil.rmtree(folder)
        meta = write_set(cfg, folder)
        print(f"{name}: {cfg.n_micrographs} x {cfg.size} px, {cfg.shape}, "
              f"diameter {cfg.diameter_px:g} px, "
              f"{sum(meta['particles'])} particles, SNR {cfg.snr:g}, defocus {cfg.defocus_range_um[0]:g}-"
              f"{cfg.defocus_range_um[1]:g} um, {cfg.pixel_size:g} A/px, ice gradient "
              f"{cfg.background_strength:g}, carbon on {sum(meta['carbon'])}, "
              f"{sum(meta['contaminants'])} contamination blobs", flush=True)
    print(f"wrote {len(plans)} sets to {args.root} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
