"""Does a starting model help a new dataset with few picks?

For each target set in ../shared/data, train on only its first N ``train`` micrographs (validated
on its ``valid`` micrograph) twice: from scratch, and from a starting model that never saw the
target set (``--init``: by default a model trained on the other set(s) with bench/accuracy.py's
layout, or any model folder given per set). Picks the target's ``test`` micrographs at the
calibrated threshold and scores them. One line per (target, start).

    python bench/fewshot.py --init cryoppp-10947=MODEL_DIR --init cryoppp-10028=MODEL_DIR [--n 1]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, pick_and_score, run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--init", action="append", default=[],
                        help="TARGET_SET=MODEL_DIR: starting model for that target (must not have seen it)")
    parser.add_argument("--n", type=int, default=1, help="labelled micrographs of the target set")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "fewshot")
    args = parser.parse_args()
    inits = dict(item.split("=", 1) for item in args.init)
    py = [sys.executable, "-m", "cryounet"]
    for target, init in sorted(inits.items()):
        root = args.data / target
        diameter = json.loads((root / "meta.json").read_text())["diameter_px"]
        mics = sorted((root / "train").glob("*.mrc"))[: args.n]
        for start in ("scratch", "init"):
            out = args.output / f"{target}_n{args.n}_{start}"
            out.mkdir(parents=True, exist_ok=True)
            log = out / "log.txt"
            log.write_text("")
            cmd = py + ["train", "--micrographs", *map(str, mics), "--coordinates", str(root / "train"),
                        "--valid-micrographs", str(root / "valid"), "--valid-coordinates", str(root / "valid"),
                        "--diameter", str(diameter), "--output", str(out / "model"), "--overwrite", "--device", "cpu",
                        "--quiet"]
            if start == "init":
                cmd += ["--init", init]
            seconds, _ = run(cmd, log)
            s, _, _ = pick_and_score([out / "model"], root / "test", diameter, out, log)
            print(f"fewshot {target} n={args.n} start={start}{'' if start == 'scratch' else ' (' + init + ')'}: "
                  f"P={s['precision']:.3f} R={s['recall']:.3f} F1={s['f1']:.3f} bestF1={s['best_f1']:.3f} "
                  f"AP={s['ap']:.3f} train={seconds / 60:.1f}min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
