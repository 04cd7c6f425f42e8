"""Ablation of the research note's ideas on the real CryoPPP excerpts in ../shared/data.

Runs the baseline, each option alone (a JSON override of the baseline config), and the combined
default, on every set: train on ``train`` (validating on ``valid``), pick ``test`` at the calibrated
threshold, score with ../shared/data/README.md's convention. Prints one line per (variant, set)
and a markdown table for a study in docs/history; results are cached per variant in --output, so an
interrupted run continues where it stopped.

    python bench/ablation.py [--variants baseline attention_gates ...] [--sets cryoppp-10028 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, pick_and_score, run  # noqa: E402

#: The plain U-Net of the research note: BCE, no augmentation, uniform patches, constant LR, the
#: best-validation-F1 epoch (early stopping), no test-time augmentation, NMS at half a diameter.
#: Every key a default might change is pinned here, so the baseline stays the same when the
#: engine's defaults move.
BASELINE = {
    "model": {"architecture": "unet", "base_channels": 16, "depth": 3, "norm": "batch"},
    "loss": {"name": "bce"},
    "augment": {"preset": "none"},
    "train": {"schedule": "constant", "warmup_epochs": 0, "positive_fraction": 0.0, "epochs": 40,
              "patience": 10, "selection": "best", "calibration_tolerance": 0.0},
    "pick": {"tta": False, "nms_radius": 0.5},
}

#: Each option alone, as an override of the baseline. ``ensemble``/``tta``/``refine`` are handled
#: by the runner (several models, --tta, cryounet refine); they start from the baseline's cached
#: model (same config and seed, so the same network) instead of training it again.
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "attention_gates": {"model": {"attention_gates": True}},
    "se_attention": {"model": {"se": True}},
    "bottleneck_attention": {"model": {"bottleneck_attention": True}},
    "augment_light": {"augment": {"preset": "light"}},
    "augment_strong": {"augment": {"preset": "strong"}},
    "loss_focal": {"loss": {"name": "focal"}},
    "loss_dice": {"loss": {"name": "bce_dice"}},
    "loss_focal_dice": {"loss": {"name": "focal_dice"}},
    "class_balanced": {"loss": {"pos_weight": 5.0}},
    "label_smoothing": {"loss": {"label_smoothing": 0.1}},
    "wider": {"model": {"base_channels": 32}},
    "deeper": {"model": {"depth": 4}},
    "residual_unet": {"model": {"architecture": "residual_unet"}},
    "efficient_unet": {"model": {"architecture": "efficient_unet"}},
    "warmup_cosine": {"train": {"schedule": "cosine", "warmup_epochs": 2}},
    "weight_average": {"train": {"ema_decay": 0.99}},
    "group_norm": {"model": {"norm": "group"}},
    "balanced_sampling": {"train": {"positive_fraction": 0.5}},
    "hard_negatives": {"train": {"hard_negative_fraction": 0.25}},
    "pu_weight_0.5": {"target": {"unlabelled_weight": 0.5}},
    "opening": {"pick": {"opening_radius": 0.1}},
    "component_filter": {"pick": {"min_component_area": 0.05}},
    "tta": {"_tta": True},
    "ensemble_3": {"_ensemble": 3},
    "refine": {"_refine": True},
    "default": None,  # the engine's defaults (CryoUNetConfig()), i.e. the combined choice
}


def merge(base: dict, over: dict) -> dict:
    out = json.loads(json.dumps(base))
    for section, values in over.items():
        out.setdefault(section, {}).update(values)
    return out


def run_s(cmd: list[str], log: Path) -> float:
    return run(cmd, log)[0]


def run_variant(name: str, root: Path, out: Path) -> dict:
    spec = VARIANTS[name]
    diameter = json.loads((root / "meta.json").read_text())["diameter_px"]
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    log.write_text("")
    py = [sys.executable, "-m", "cryounet"]
    options = {k: v for k, v in (spec or {}).items() if k.startswith("_")}
    config = None if spec is None else merge(BASELINE, {k: v for k, v in spec.items() if not k.startswith("_")})
    cfg_args = []
    if config is not None:
        (out / "config.json").write_text(json.dumps(config, indent=2))
        cfg_args = ["--config", str(out / "config.json")]
    data = ["--valid-micrographs", str(root / "valid"), "--valid-coordinates", str(root / "valid"),
            "--diameter", str(diameter), "--device", "cpu", "--quiet"]
    models, train_s = [], 0.0
    for k in range(options.get("_ensemble", 1)):
        model = out / f"model_{k}"
        reused = _baseline_model(name, spec, out, k)
        if reused is not None:
            models.append(reused[0])
            train_s += reused[1]
            continue
        train_s += run_s(py + ["train", "--micrographs", str(root / "train"), "--coordinates",
                             str(root / "train"), "--output", str(model), "--overwrite", "--seed", str(k)] + data
                       + cfg_args, log)
        models.append(model)
    if options.get("_refine"):
        refined = out / "refined"
        train_s += run_s(py + ["refine", "--model", str(models[0]), "--micrographs", str(root / "train"),
                             "--coordinates", str(root / "train"), "--unlabelled", str(root / "test"),
                             "--valid-micrographs", str(root / "valid"), "--valid-coordinates",
                             str(root / "valid"), "--output", str(refined), "--overwrite", "--device", "cpu",
                             "--quiet"], log)
        models = [refined]
    scores, _, _ = pick_and_score(models, root / "test", diameter, out, log,
                                  ["--tta"] if options.get("_tta") else [])
    return {"variant": name, "set": root.name, "train_seconds": train_s,
            "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"), **scores}


def _baseline_model(name: str, spec: dict | None, out: Path, seed: int) -> tuple[Path, float] | None:
    """The baseline's cached model and training seconds, when variant ``name`` trains exactly the
    baseline's network (no config override) with seed 0; else None."""
    if name == "baseline" or spec is None or seed != 0 or any(not k.startswith("_") for k in spec):
        return None
    base = out.parent.parent / "baseline" / out.name
    model, result = base / "model_0", base / "result.json"
    if not (model / "model.safetensors").is_file() or not result.is_file():
        return None
    return model, float(json.loads(result.read_text())["train_seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="*")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS))
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "ablation")
    parser.add_argument("--rerun", action="store_true", help="ignore cached results")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"ablation: no data folder {args.data}; nothing to measure")
        return 0
    sets = args.sets or sorted(p.name for p in args.data.iterdir() if (p / "meta.json").is_file())
    rows = []
    for name in args.variants or list(VARIANTS):
        for set_name in sets:
            out = args.output / name / set_name
            cached = out / "result.json"
            if cached.is_file() and not args.rerun:
                row = json.loads(cached.read_text())
            else:
                row = run_variant(name, args.data / set_name, out)
                cached.write_text(json.dumps(row, indent=2))
            rows.append(row)
            print(f"ablation {name} {set_name}: P={row['precision']:.3f} R={row['recall']:.3f} "
                  f"F1={row['f1']:.3f} bestF1={row['best_f1']:.3f} AP={row['ap']:.3f} "
                  f"train={row['train_seconds'] / 60:.1f}min", flush=True)
    print("\n| variant | set | P | R | F1 (auto thr.) | best F1 | AP | train (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['set']} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['f1']:.3f} | {r['best_f1']:.3f} | {r['ap']:.3f} | {r['train_seconds'] / 60:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
