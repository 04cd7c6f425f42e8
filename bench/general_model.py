"""Train the general starting model shipped in ``cryounet/weights/general`` (``--init general``).

Trains one model on every set in ../shared/data together (``cryounet train --datasets``: each set's
``train`` micrographs, validated on its ``valid`` micrographs, each at its own diameter), then
stores the weights in float16 (half the size; they are loaded into a float32 network) with the
config, history and validation curve.

    python bench/general_model.py [--data ../shared/data] [--output cryounet/weights/general]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=REPO / "cryounet" / "weights" / "general")
    parser.add_argument("--config", type=Path, help="engine config JSON")
    args = parser.parse_args()
    sets = sorted(p for p in args.data.iterdir() if (p / "meta.json").is_file())
    if not sets:
        sys.exit(f"no data sets in {args.data}")
    datasets = [{"micrographs": [str(s / "train")], "coordinates": str(s / "train"),
                 "diameter": json.loads((s / "meta.json").read_text())["diameter_px"],
                 "valid_micrographs": [str(s / "valid")], "valid_coordinates": str(s / "valid")}
                for s in sets]
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "datasets.json"
        spec.write_text(json.dumps(datasets, indent=2))
        model = Path(tmp) / "model"
        cmd = [sys.executable, "-m", "cryounet", "train", "--datasets", str(spec), "--output",
               str(model), "--device", "cpu"]
        if args.config:
            cmd += ["--config", str(args.config)]
        subprocess.run(cmd, check=True, cwd=REPO)

        from safetensors.torch import load_file, save_file

        state = load_file(str(model / "model.safetensors"))
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        args.output.mkdir(parents=True, exist_ok=True)
        save_file(half, str(args.output / "model.safetensors"),
                  metadata={"trained_on": ", ".join(s.name for s in sets)})
        for name in ("config.json", "history.json", "validation_curve.json"):
            shutil.copyfile(model / name, args.output / name)
    print(f"general model: trained on {', '.join(s.name for s in sets)}; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
