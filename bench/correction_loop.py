"""The correction loop, measured (issue 34): a general model that never saw a protein, fine-tuned on
N corrected micrographs of it, against a model trained on the whole labelled training split.

For each set: the leave-one-protein-out model of ``bench/lopo.py`` (trained without that set) is
fine-tuned with ``cryounet train --init`` on the first N ``train`` micrographs with their labels
(the user's corrections), and the full model is trained from scratch on all ``train`` micrographs
(the full model validated on ``valid`` when the set has it; the fine-tuned one, as a user's would,
on a part of its own micrographs that ``cryounet train`` holds out).
Both pick the set's ``test`` micrographs down to p = 0.0025 and are scored there: F1 at the model's
own threshold, best F1 (tuned on the truth) and AP; the training minutes are wall time.

    python bench/correction_loop.py --data ../shared/data PUBLIC_SETS --lopo bench/results/lopo-runs/seed0
                                    [--n 1] [--threads 2] [--json bench/results/correction-loop.json]

Each row names the recipe it was fine-tuned from (``--lopo``'s folder: ``seed0`` is *plain*,
``seed0-sim24`` is *sim24*); a run replaces the earlier rows of its recipe, sets and N only, and
the earlier command, notes, code and machine stay on record. Give each recipe its own
``--output`` (its fine-tuned models are cached there).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, REPO, provenance, run  # noqa: E402
from lopo import diameter_of, find_sets, score_set  # noqa: E402


def corrected_subset(folder: Path, n: int, out: Path) -> Path:
    """The first ``n`` labelled training micrographs of a set, with their coordinate files."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for mic in sorted((folder / "train").glob("*.mrc"))[:n]:
        shutil.copy(mic, out / mic.name)
        shutil.copy(mic.with_suffix(".star"), out / f"{mic.stem}.star")
    return out


def train(model: Path, micrographs: Path, folder: Path, log: Path, threads: int, init: Path | None) -> float:
    """Train into ``model`` (cached when complete); minutes of wall time (0 when cached). The full
    training validates on the set's ``valid`` micrographs when it has them; a fine-tuning (``init``)
    never does: like a user with a few corrected micrographs, it holds part of them out."""
    marker = model / ".cryounet-output.json"
    if marker.is_file() and json.loads(marker.read_text()).get("complete"):
        return 0.0
    cmd = PY + ["train", "--micrographs", micrographs, "--coordinates", micrographs, "--diameter",
                str(diameter_of(folder)), "--output", model, "--overwrite", "--device", "cpu", "--threads",
                str(threads), "--seed", "0"]
    if init is None and (folder / "valid").is_dir():
        cmd += ["--valid-micrographs", folder / "valid", "--valid-coordinates", folder / "valid"]
    if init is not None:
        cmd += ["--init", init]
    seconds, _ = run(cmd, log)
    return seconds / 60


def timed_train(model: Path, micrographs: Path, folder: Path, log: Path, threads: int, init: Path | None) -> float:
    """:func:`train`, with the minutes of a cached model read from ``<model>.minutes.json``, which is
    written beside the model folder when it is trained."""
    record = model.with_name(model.name + ".minutes.json")
    minutes = train(model, micrographs, folder, log, threads, init)
    if minutes == 0.0 and record.is_file():
        return json.loads(record.read_text())["minutes"]
    record.write_text(json.dumps({"minutes": minutes}))
    return minutes


def correct(name: str, folder: Path, n: int, out: Path, log: Path, threads: int, lopo: Path, full: dict,
            full_min: float) -> dict:
    """Fine-tune the model that never saw ``name`` on its first ``n`` training micrographs; score it."""
    subset = corrected_subset(folder, n, out / f"corrected-{n}")
    tuned_min = timed_train(out / f"tuned-{n}", subset, folder, log, threads, lopo / f"without-{name}" / "model")
    tuned = score_set(out / f"tuned-{n}", folder, out / f"score-tuned-{n}", log, threads)
    print(f"correction loop {name}: {n} corrected micrograph(s), fine-tuned from the general model "
          f"without it: F1 {tuned['f1_own']:.3f} (best {tuned['best_f1']:.3f}, AP {tuned['ap']:.3f}) in "
          f"{tuned_min:.1f} min; full training: F1 {full['f1_own']:.3f} (best {full['best_f1']:.3f}, "
          f"AP {full['ap']:.3f})", flush=True)
    return {"set": name, "corrected": n, "tuned_minutes": round(tuned_min, 2), "full_minutes": round(full_min, 2),
            "tuned": {k: tuned[k] for k in ("f1_own", "f1_otsu", "best_f1", "ap")},
            "full": {k: full[k] for k in ("f1_own", "f1_otsu", "best_f1", "ap")}}


def recipe_of(lopo: Path) -> str:
    """The training recipe of a bench/lopo.py runs folder: ``seed0`` is plain, ``seed0-sim24`` sim24."""
    _, _, variant = lopo.name.partition("-")
    return variant or "plain"


def row_key(row: dict) -> tuple[str, str, int]:
    """A row's set, starting recipe (rows written before recipes were recorded: plain) and N."""
    return row["set"], row.get("start", "plain"), row["corrected"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[REPO.parent / "shared" / "data"])
    parser.add_argument("--lopo", type=Path, required=True, help="bench/lopo.py's runs folder of one seed")
    parser.add_argument("--sets", nargs="*")
    parser.add_argument("--n", type=int, nargs="+", default=[1],
                        help="corrected micrographs (several: one fine-tuning each; capped at the set's train split)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "correction-runs")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "correction-loop.json")
    args = parser.parse_args()
    earlier = json.loads(args.json.read_text()) if args.json.is_file() else {}
    start = recipe_of(args.lopo)
    rows = []
    for name, folder in find_sets(args.data, args.sets).items():
        out = args.output / name
        out.mkdir(parents=True, exist_ok=True)
        log = out / "log.txt"
        full_min = timed_train(out / "full", folder / "train", folder, log, args.threads, None)
        full = score_set(out / "full", folder, out / "score-full", log, args.threads)
        available = len(list((folder / "train").glob("*.mrc")))
        for n in sorted({min(n, available) for n in args.n}):
            rows.append({**correct(name, folder, n, out, log, args.threads, args.lopo, full, full_min),
                         "start": start})
    done = {row_key(r) for r in rows}
    rows = [r for r in earlier.get("rows", []) if row_key(r) not in done] + rows
    rows.sort(key=row_key)
    ns = " ".join(map(str, args.n))
    table = [[r["set"], r.get("start", "plain"), r["corrected"], f"{r['tuned']['f1_own']:.3f}",
              f"{r['tuned'].get('f1_otsu', float('nan')):.3f}",
              f"{r['full']['f1_own']:.3f}", f"{r['tuned']['f1_own'] - r['full']['f1_own']:+.3f}",
              f"{r['tuned']['ap']:.3f}", f"{r['full']['ap']:.3f}", f"{r['tuned_minutes']:g}", f"{r['full_minutes']:g}"]
             for r in rows]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "id": "correction-loop", "title": "The correction loop: N corrected micrographs against full training",
        "command": earlier.get("command", "python bench/correction_loop.py --data ../shared/data PUBLIC_SETS "
                               f"--lopo LOPO_RUNS/seedS[-RECIPE] --n {ns} --threads {args.threads}"),
        **provenance(earlier, f"{os.cpu_count()}-core {platform.machine()} VM, {args.threads} thread(s)",
                     f"{start}, N = {ns}"),
        "date": time.strftime("%Y-%m-%d"),
        "table": {"columns": ["set", "fine-tuned from", "corrected micrographs", "F1 fine-tuned",
                              "F1 fine-tuned at otsu", "F1 full training", "difference", "AP fine-tuned",
                              "AP full", "fine-tuning (min)", "full training (min)"],
                  "rows": table},
        # the first note describes the table; later ones, records of earlier runs, are kept
        "notes": ["Fine-tuned from the leave-one-protein-out model that never saw the set (*fine-tuned from*: "
                  "its recipe in bench/lopo.py); F1 at each model's own calibrated threshold on the set's test "
                  "micrographs (difference: fine-tuned minus full); *at otsu*: at the label-free threshold read "
                  "from the picked scores (pick --threshold otsu); N is capped at the set's training split (4 on "
                  "the CryoPPP sets); seed 0; minutes are wall time with other benchmarks sharing the 2 cores "
                  "(upper bounds)."] + earlier.get("notes", [])[1:],
        "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
