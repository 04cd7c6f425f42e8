"""Train the general starting model shipped in ``cryounet/weights/general`` (``--init general``).

Trains one model on every set in the ``--data`` folders together (``cryounet train --datasets``:
each set's ``train`` micrographs, validated on its ``valid`` micrographs, each at its own
diameter; a set without ``valid`` gives its last ``train`` micrograph, by name, to validation),
then stores the weights in float16 (half the size; they are loaded into a float32 network) with
the config, history and validation curve. EMPIAR-10059 is never used.

    python bench/general_model.py [--data ../shared/data PUBLIC_SETS] [--extra SIMULATED_SETS]
                                  [--config FILE.json] [--output cryounet/weights/general]
    python bench/general_model.py --calibrate-tta [--data ...] [--output cryounet/weights/general]

``--calibrate-tta`` adds to an existing model folder the threshold calibrated with test-time
augmentation on the same validation micrographs (each set's ``valid``), as training does for every
model it writes; the weights, graph and their hashes are left as they are.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lopo import diameter_of  # noqa: E402
from lopo import find_sets as find_named_sets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def find_sets(roots: list[Path]) -> list[Path]:
    """The labelled sets in ``roots`` (:func:`lopo.find_sets`: EMPIAR-10059 left out), by name."""
    return sorted(find_named_sets(roots, None).values(), key=lambda p: p.name)


def validation_split(folder: Path) -> tuple[list[str], list[str], str]:
    """``(training micrographs, validation micrographs, validation coordinates folder)`` of a set:
    its ``valid`` folder, else its last ``train`` micrograph by name."""
    if (folder / "valid").is_dir():
        return [str(folder / "train")], [str(folder / "valid")], str(folder / "valid")
    mics = sorted(str(p) for p in (folder / "train").glob("*.mrc"))
    return mics[:-1], mics[-1:], str(folder / "train")


def dataset_entry(folder: Path) -> dict:
    train, valid, valid_coordinates = validation_split(folder)
    return {"micrographs": train, "coordinates": str(folder / "train"),
            "diameter": diameter_of(folder),
            "valid_micrographs": valid, "valid_coordinates": valid_coordinates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[REPO.parent / "shared" / "data"])
    parser.add_argument("--output", type=Path, default=REPO / "cryounet" / "weights" / "general")
    parser.add_argument("--config", type=Path, help="engine config JSON")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[],
                        help="folders of training-only sets (bench/simulated_sets.py): trained on, never "
                             "validated on")
    parser.add_argument("--calibrate-tta", action="store_true",
                        help="only calibrate the TTA threshold of the model in --output")
    args = parser.parse_args()
    if args.calibrate_tta:
        return calibrate_tta(args.output, find_sets(args.data))
    sets = find_sets(args.data)
    if not sets:
        sys.exit(f"no data sets in {' '.join(map(str, args.data))}")
    datasets = [dataset_entry(s) for s in sets]
    extra = find_sets(args.extra) if args.extra else []
    datasets += [{"micrographs": [str(s / "train")], "coordinates": str(s / "train"), "validate": False,
                  "diameter": diameter_of(s)} for s in extra]
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "datasets.json"
        spec.write_text(json.dumps(datasets, indent=2))
        model = Path(tmp) / "model"
        cmd = [sys.executable, "-m", "cryounet", "train", "--datasets", str(spec), "--output",
               str(model), "--device", "cpu", "--threads", str(args.threads)]
        if args.config:
            cmd += ["--config", str(args.config)]
        subprocess.run(cmd, check=True, cwd=REPO)

        from safetensors.torch import load_file, save_file

        state = load_file(str(model / "model.safetensors"))
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        args.output.mkdir(parents=True, exist_ok=True)
        save_file(half, str(args.output / "model.safetensors"),
                  metadata={"trained_on": ", ".join(s.name for s in sets + extra)})
        for name in ("config.json", "history.json", "validation_curve.json"):
            shutil.copyfile(model / name, args.output / name)
    from cryounet.io.model_folder import ONNX_NAME, WEIGHTS_NAME, record_digests

    (args.output / ONNX_NAME).unlink(missing_ok=True)  # this script's earlier graph: export writes it anew
    record_digests(args.output, [WEIGHTS_NAME, ONNX_NAME])  # the float16 weights' SHA-256
    print(f"general model: trained on {', '.join(s.name for s in sets + extra)}; written to {args.output}; then: "
          f"cryounet export --model {args.output} and python bench/general_model.py --calibrate-tta")
    return 0


def calibrate_tta(folder: Path, sets: list[Path]) -> int:
    """Calibrate ``folder``'s TTA threshold on every set's validation micrographs (as training
    validated on them: :func:`validation_split`; the engine's rule,
    :func:`cryounet.training.validation.validate` with ``tta``) and record it in config.json."""
    import torch

    from cryounet.io.atomic import write_json
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.model_folder import CONFIG_NAME, read_model_info
    from cryounet.models.weights import load_model
    from cryounet.training.data import load_labelled
    from cryounet.training.validation import validate

    info = read_model_info(folder)
    items = []
    for root in sets:
        diameter = diameter_of(root)
        _, valid, coordinates = validation_split(root)
        items += load_labelled(expand_micrographs(valid), Path(coordinates), diameter, info.config.preprocess)[0]
    model = load_model(folder, "cpu")
    with_tta = validate(model.network, items, info.config, torch.device("cpu"), tta=True)
    record = json.loads((folder / CONFIG_NAME).read_text())
    record["threshold_tta"], record["validation_tta"] = with_tta.threshold, with_tta.metrics()
    write_json(folder / CONFIG_NAME, record)
    print(f"general model: TTA threshold {with_tta.threshold:.3f} (validation F1 {with_tta.f1:.3f} on "
          f"{len(items)} micrographs; without TTA {info.threshold:.3f}); written to {folder / CONFIG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
