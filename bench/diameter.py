"""Particle-diameter estimate (cryounet.analysis) against the annotated diameter of each set.

Sets: the shared CryoPPP sets (``--data``), the two sets ``build_public_sets.py`` builds (``--public``,
skipped when absent) and three simulated sets of the same particle at three pixel sizes (30, 60 and
120 px, written to a temporary folder). For each set, all its micrographs (every split) are the
evidence, estimated three ways: from the coordinates alone (box sizes, spacing), from the
micrographs alone (blob scale space) and combined (every method; what ``cryounet diameter
--coordinates`` and ``train``'s check use). The table gives each estimate, its ratio to the
annotation and the per-method figures; then ``train``'s check on the ``train`` split at the
annotated diameter (it must pass) and at 300 px (CryoPPP-10028, the wrong-unit case).

    python bench/diameter.py [--data ../shared/data] [--public DIR] [--out bench/results/diameter.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryounet.analysis.diameter_inputs import (Evidence, estimate_from, read_evidence,  # noqa: E402
                                               training_diameter_problem)
from cryounet.io.micrographs import expand_micrographs  # noqa: E402

SIMULATED = ((30.0, 1024, 150, 4.0), (60.0, 1024, 80, 2.0), (120.0, 2048, 60, 1.0))
MODES = {"coordinates": dict(use_images=False), "micrographs": dict(use_coordinates=False),
         "combined": {}}


def _sets(data: Path, public: Path | None, scratch: Path) -> list[tuple[str, Path, float]]:
    """``(name, folder, annotated diameter)`` of every set found."""
    from cryounet.simulate import SimulationConfig, simulate_dataset

    found = []
    for root in [data] + ([public] if public else []):
        for meta in sorted(root.glob("*/meta.json")):
            found.append((meta.parent.name, meta.parent, float(json.loads(meta.read_text())["diameter_px"])))
    for diameter, size, particles, pixel in SIMULATED:
        folder = scratch / f"simulated-{diameter:.0f}px"
        simulate_dataset(SimulationConfig(n_micrographs=4, size=size, diameter_px=diameter,
                                          particles_per_micrograph=particles, pixel_size=pixel, seed=1), folder)
        found.append((folder.name, folder, diameter))
    return found


def _splits(folder: Path) -> list[Path]:
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and any(p.glob("*.mrc"))]
    return subs or [folder]


def _evidence(folder: Path) -> Evidence:
    parts = [read_evidence(expand_micrographs([str(s)]), s) for s in _splits(folder)]
    return Evidence(*(sum((getattr(p, f) for p in parts), []) for f in ("paths", "xy", "shapes", "box_sizes")))


def _row(name: str, folder: Path, truth: float) -> dict:
    evidence = _evidence(folder)
    row: dict = {"set": name, "annotated_px": truth, "micrographs": len(evidence.paths),
                 "picks": int(sum(len(xy) for xy in evidence.xy))}
    for mode, options in MODES.items():
        t0 = time.monotonic()
        estimate = estimate_from(evidence, **options)
        value = estimate.diameter_px
        row[mode] = {**estimate.as_dict(), "seconds": round(time.monotonic() - t0, 1),
                     "ratio": None if value is None else round(value / truth, 3),
                     "within_25_percent": value is not None and abs(value / truth - 1) <= 0.25}
    train = next((s for s in _splits(folder) if s.name == "train"), _splits(folder)[0])
    t0 = time.monotonic()
    problem = training_diameter_problem(truth, expand_micrographs([str(train)]), train)
    row["train_check_at_annotated"] = {"folder": train.name, "refused": problem is not None, "message": problem,
                                       "seconds": round(time.monotonic() - t0, 1)}
    if name == "cryoppp-10028":
        problem = training_diameter_problem(300.0, expand_micrographs([str(train)]), train)
        row["train_check_at_300"] = {"refused": problem is not None, "message": problem}
    return row


def _print(rows: list[dict]) -> None:
    def cell(entry: dict) -> str:
        value = entry["diameter_px"]
        return "   -  (  -  )" if value is None else f"{value:5.0f} ({entry['ratio']:.2f})"

    print(f"{'set':<24} {'annot.':>6}  {'coordinates':>13}  {'micrographs':>13}  {'combined':>13}  "
          f"check@annot.  methods (combined)")
    for row in rows:
        methods = ", ".join(f"{m['method']} {m['diameter_px']:.0f}" for m in row["combined"]["methods"]
                            if m["diameter_px"] is not None)
        check = "refused" if row["train_check_at_annotated"]["refused"] else "passes"
        print(f"{row['set']:<24} {row['annotated_px']:6.1f}  {cell(row['coordinates']):>13}  "
              f"{cell(row['micrographs']):>13}  {cell(row['combined']):>13}  {check:<12}  {methods}")
        if "train_check_at_300" in row:
            print(f"{'':<24} train --diameter 300: "
                  f"{'refused' if row['train_check_at_300']['refused'] else 'passes'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--public", type=Path, help="OUT folder of build_public_sets.py")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "diameter.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [_row(*entry) for entry in _sets(args.data, args.public, Path(scratch))]
    _print(rows)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    record = {"command": "python bench/diameter.py " + " ".join(sys.argv[1:]),
              "machine": "2-core x86_64 VM, shared", "date": datetime.date.today().isoformat(),
              "code": commit, "id": "diameter",
              "title": "Diameter estimate against the annotated diameter", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
