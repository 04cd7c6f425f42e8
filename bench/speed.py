"""Speed benchmark: pick real-size (4096 x 4096 float32) micrographs on the CPU, swept over particle
diameters, with and without test-time augmentation, one micrograph and a batch.

For each diameter a micrograph is made with ``cryounet simulate`` and a small model is trained on
simulated micrographs of that diameter unless ``--model`` is given (not timed). Each run is the real
``cryounet pick`` command in its own process: wall time (start-up, reading, writing included) and
peak RSS. One line per (diameter, TTA, batch size); the batch line also gives seconds per
micrograph. The working image is diameter / 16 times smaller than the micrograph (the default
working particle of 16 px): 50 px particles give a 1310 px working image, 300 px a 218 px one.

    python bench/speed.py [--diameters 50 80 108 150 200 300] [--batch 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "cryounet"]
QUICK_TRAIN = {"train": {"epochs": 3, "steps_per_epoch": 20}}


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one command run in its own process."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def quiet(cmd: list[str]) -> None:
    subprocess.run(cmd + ["--quiet"], check=True, cwd=REPO)


def prepare(work: Path, diameter: float, size: int, batch: int, model: Path | None) -> tuple[Path, Path, Path]:
    """(one-micrograph folder, batch folder, model folder) for one diameter."""
    one = work / f"d{diameter:g}" / "one"
    quiet(PY + ["simulate", "--overwrite", "--output", str(one), "--micrographs", "1", "--size", str(size),
                "--diameter", str(diameter), "--particles", "300", "--seed", "1"])
    many = work / f"d{diameter:g}" / "batch"
    many.mkdir(parents=True, exist_ok=True)
    for i in range(batch):  # the same micrograph under several names: the work per micrograph is real
        link = many / f"mic_{i:03d}.mrc"
        if not link.exists():
            link.symlink_to(one / "mic_000.mrc")
    if model is None:
        train = work / f"d{diameter:g}" / "train"
        quiet(PY + ["simulate", "--overwrite", "--output", str(train), "--micrographs", "4", "--size", "1024",
                    "--diameter", str(diameter)])
        cfg = work / "quick.json"
        cfg.write_text(json.dumps(QUICK_TRAIN))
        model = work / f"d{diameter:g}" / "model"
        quiet(PY + ["train", "--micrographs", str(train), "--coordinates", str(train), "--diameter", str(diameter),
                    "--output", str(model), "--overwrite", "--config", str(cfg), "--device", "cpu"])
    return one, many, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diameters", type=float, nargs="+", default=[50, 80, 108, 150, 200, 300],
                        help="particle diameters in px")
    parser.add_argument("--size", type=int, default=4096, help="micrograph side in px")
    parser.add_argument("--batch", type=int, default=20, help="micrographs in the batch runs (0: none)")
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one per diameter)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of one micrograph (min and median)")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temp folder)")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="more arguments for cryounet pick (e.g. --extra=--backend=torch)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        for diameter in args.diameters:
            one, many, model = prepare(work, diameter, args.size, args.batch, args.model)
            for variant, flag in (("plain", "--no-tta"), ("tta", "--tta")):
                # A given model picks at this diameter (its working scale follows it).
                size = ["--diameter", f"{diameter:g}"] if args.model is not None else []
                base = PY + ["pick", "--model", str(model), "--overwrite", "--device", "cpu", "--quiet", flag,
                             *size, *args.extra]
                runs = [timed(base + ["--micrographs", str(one), "--output", str(work / "picks_one")])
                        for _ in range(args.repeat)]
                walls = sorted(w for w, _ in runs)
                n_picks = sum(1 for ln in (work / "picks_one" / "mic_000.star").read_text().splitlines()
                              if ln[:1].isdigit())
                print(f"speed {variant} d={diameter:g}px: 1 x {args.size}x{args.size}, CPU x{os.cpu_count()}: "
                      f"wall min {walls[0]:.2f} s, median {walls[len(walls) // 2]:.2f} s, peak RSS "
                      f"{max(r for _, r in runs):.0f} MiB, {n_picks} picks", flush=True)
                if args.batch:
                    wall, rss = timed(base + ["--micrographs", str(many), "--output", str(work / "picks_batch")])
                    print(f"speed {variant} d={diameter:g}px: batch of {args.batch}: wall {wall:.1f} s, "
                          f"{wall / args.batch:.2f} s per micrograph, peak RSS {rss:.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
