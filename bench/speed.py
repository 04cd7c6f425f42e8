"""Speed benchmark: pick one 4096 x 4096 float32 micrograph on the CPU.

Makes the micrograph with ``cryounet simulate`` (particle diameter ``--diameter``, 128 px by default,
i.e. a 16 px working particle as in Topaz's usual downsampling by 8), trains a small model on
simulated micrographs with the same diameter unless ``--model`` is given (not timed), then times the
real ``cryounet pick`` command in its own process: wall time (including start-up, reading and
writing) and peak RSS. Prints one line per variant (plain, and with test-time augmentation).

    python bench/speed.py [--diameter 128] [--model MODEL_DIR] [--repeat 3]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diameter", type=float, default=128.0, help="particle diameter in px")
    parser.add_argument("--size", type=int, default=4096, help="micrograph side in px")
    parser.add_argument("--model", type=Path, help="model folder (default: train a small one)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant (min reported)")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temp folder)")
    args = parser.parse_args()
    py = [sys.executable, "-m", "cryounet"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        mic_dir = work / "mic"
        subprocess.run(py + ["simulate", "--overwrite", "--output", str(mic_dir), "--micrographs", "1", "--size",
                             str(args.size), "--diameter", str(args.diameter), "--particles", "300",
                             "--seed", "1", "--quiet"], check=True, cwd=REPO)
        model = args.model
        if model is None:
            train_dir = work / "train"
            subprocess.run(py + ["simulate", "--overwrite", "--output", str(train_dir), "--micrographs", "4", "--size",
                                 "1024", "--diameter", str(args.diameter), "--quiet"], check=True, cwd=REPO)
            cfg = work / "quick.json"
            cfg.write_text(json.dumps(QUICK_TRAIN))
            model = work / "model"
            subprocess.run(py + ["train", "--micrographs", str(train_dir), "--coordinates", str(train_dir),
                                 "--diameter", str(args.diameter), "--output", str(model), "--overwrite", "--config",
                                 str(cfg), "--device", "cpu", "--quiet"], check=True, cwd=REPO)
        for variant, extra in (("plain", ["--no-tta"]), ("tta", ["--tta"])):
            runs = []
            for i in range(args.repeat):
                out = work / f"picks_{variant}_{i}"
                runs.append(timed(py + ["pick", "--model", str(model), "--micrographs", str(mic_dir),
                                        "--output", str(out), "--overwrite", "--device", "cpu", "--quiet"] + extra))
            walls = sorted(w for w, _ in runs)
            n_picks = sum(1 for ln in (out / "mic_000.star").read_text().splitlines()
                          if ln[:1].isdigit())
            print(f"speed {variant}: {args.size}x{args.size} float32 micrograph, diameter "
                  f"{args.diameter:g} px, CPU x{os.cpu_count()}: wall min {walls[0]:.2f} s, median "
                  f"{walls[len(walls) // 2]:.2f} s, peak RSS {max(r for _, r in runs):.0f} MiB, "
                  f"{n_picks} picks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
