"""Ensembles of trained models, picked and scored as a user would run them.

Each ``--group`` lists model folders (comma-separated) that ``cryounet pick`` runs together as one
ensemble (mean probability map; the threshold is the mean of the members' calibrated TTA
thresholds, :func:`cryounet.io.model_folder.picking_threshold`) on the ``test`` micrographs of
``--set``, scored as ``bench/accuracy.py`` scores a single model (``bench/common.py``:
``pick_and_score``). Prints one line per group and, with several groups, their mean; ``--json``
also writes the rows.

    python bench/ensemble.py --set cryoppp-10947 --group DISK_MODEL,GAUSSIAN_MODEL [--group ...]
                             [--data ../shared/data] [--threads 2] [--no-folds] [--no-tta] [--json FILE]
                             [--backend auto|torch|onnxruntime]

``--no-folds`` picks with the main network of members trained with ``train.calibration_folds``
(else their fold networks join the ensemble, ``pick``'s default). ``--no-tta`` picks each network
once instead of over its test-time symmetries, at the members' thresholds calibrated without TTA.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, pick_and_score  # noqa: E402

KEYS = ("threshold", "precision", "recall", "f1", "best_f1", "ap")


def _line(set_name: str, label: str, r: dict) -> str:
    return (f"ensemble {set_name} {label}: thr={r['threshold']:.3f} P={r['precision']:.3f} "
            f"R={r['recall']:.3f} F1(auto)={r['f1']:.3f} bestF1={r['best_f1']:.3f} AP={r['ap']:.3f}"
            + (f" pick={r['pick_seconds']:.1f}s" if "pick_seconds" in r else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, help="set name under --data (e.g. cryoppp-10947)")
    parser.add_argument("--group", action="append", required=True, metavar="MODEL[,MODEL...]",
                        help="model folders picking together (repeat for several ensembles)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the picks")
    parser.add_argument("--no-folds", action="store_true", help="leave out the members' fold networks")
    parser.add_argument("--no-tta", action="store_true",
                        help="pick without test-time augmentation (at the members' plain thresholds)")
    parser.add_argument("--json", type=Path, help="also write every result row to this file")
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                        help="what runs the networks (cryounet pick --backend)")
    args = parser.parse_args()
    root = args.data / args.set
    if not root.is_dir():
        print(f"ensemble: no data folder {root}; nothing to measure")
        return 0
    diameter = float(json.loads((root / "meta.json").read_text())["diameter_px"])
    extra = ["--threads", str(args.threads), "--backend", args.backend] + (["--no-folds"] if args.no_folds else []) \
        + (["--no-tta"] if args.no_tta else [])
    rows = []
    for group in args.group:
        models = [Path(m) for m in group.split(",") if m]
        missing = [str(m) for m in models if not m.is_dir()]
        if missing:
            parser.error(f"no model folder {', '.join(missing)}")
        with tempfile.TemporaryDirectory(prefix="cryounet-ensemble-") as tmp:
            out = Path(tmp)
            scores, seconds, _ = pick_and_score(models, root / "test", diameter, out, out / "log.txt", extra)
        row = {"set": args.set, "models": [str(m) for m in models], "pick_seconds": seconds,
               **{k: float(scores[k]) for k in KEYS}}
        rows.append(row)
        print(_line(args.set, " + ".join(m.parent.parent.name if m.name == "model" else m.name
                                         for m in models), row), flush=True)
    if len(rows) > 1:
        mean = {k: float(np.mean([r[k] for r in rows])) for k in KEYS}
        print(_line(args.set, f"mean-of-{len(rows)}", mean), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
