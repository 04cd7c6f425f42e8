"""Test-time augmentation over subsets of the square's symmetries, on trained models.

For each ``--model SET=PATH`` and each subset, the probability maps of the set's ``valid`` and
``test`` micrographs are computed averaging over that subset, the threshold is recalibrated on
``valid`` exactly as training calibrates its TTA threshold, and ``test`` is scored as
``bench/accuracy.py`` scores it (``bench/crowded.py`` does both: F1 (auto), best F1, AP). Its
``d4`` rows reproduce ``bench/accuracy.py``'s scores of a model calibrated over 8 symmetries, and
its ``c4`` rows those of one calibrated over 4 (``pick.tta_symmetries``). The engine offers 4 and
8; the other subsets exist only here (the forward pass is replaced for the measurement).
``c4-padfirst`` averages the four rotations of the image padded to the network's pooling multiple
first, so that one pass gives the map that tiles give (the engine pads each rotation instead).
The ``scales-*`` rows average the engine's maps (four rotations) of the working image resized by
each factor and resized back (scale test-time augmentation; not an engine option).

    python bench/tta.py --model cryoppp-10028=PATH [--model SET=PATH ...] [--subsets d4 c4 ...]
                        [--data ../shared/data] [--threads 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crowded  # noqa: E402
from common import REPO  # noqa: E402

from cryounet.inference import predict  # noqa: E402
from cryounet.inference.picker import Picker  # noqa: E402
from cryounet.models.weights import load_model  # noqa: E402

#: Subsets of the symmetries (indices of ``cryounet.inference.predict._dihedral``: 0-3 the
#: rotations by 0/90/180/270 degrees, 4-7 the same after a left-right flip).
SUBSETS: dict[str, tuple[int, ...]] = {
    "d4": (0, 1, 2, 3, 4, 5, 6, 7),  # every flip and rotation (pick.tta_symmetries 8)
    "c4": (0, 1, 2, 3),  # the four rotations (pick.tta_symmetries 4)
    "klein": (0, 2, 4, 6),  # identity, 180 degrees, the two mirror axes
    "id+r180": (0, 2),
    "id+flip": (0, 4),
    "plain": (0,),
}
#: Subsets averaged over the image padded to the pooling multiple first (see :func:`_averaging_over`).
PAD_FIRST = {"c4-padfirst": SUBSETS["c4"]}
#: Scale test-time augmentation: factors the working image is resized by (see :func:`_over_scales`).
SCALES = {"scales-0.85-1-1.15": (0.85, 1.0, 1.15), "scales-1-1.2": (1.0, 1.2), "scales-0.8-1": (0.8, 1.0)}


def _averaging_over(subset: tuple[int, ...], pad_first: bool = False):
    """A stand-in for the engine's forward pass that averages over ``subset`` when TTA is on.

    ``pad_first``: the image is padded to the network's pooling multiple before it is rotated (as
    the tiled path does), so that every rotation sees the same pooling grid; the engine's one pass
    pads each rotation instead, at its own bottom and right."""
    plain = predict._forward_probability

    @torch.no_grad()
    def forward(network, batch, tta, symmetries=8, together=False):
        if not tta:
            return plain(network, batch, tta)
        ny, nx = batch.shape[-2:]
        multiple = predict._multiple(network)
        pad_y, pad_x = (-ny) % multiple, (-nx) % multiple
        if pad_first and (pad_y or pad_x):
            mode = "reflect" if min(ny, nx) > max(pad_y, pad_x) else "replicate"
            padded = torch.nn.functional.pad(batch, (0, pad_x, 0, pad_y), mode=mode)
            return forward(network, padded, tta, symmetries, together)[..., :ny, :nx]
        total = torch.zeros(batch.shape, dtype=torch.float32, device=batch.device)
        for k in subset:
            total += predict._dihedral_inverse(torch.sigmoid(network(predict._dihedral(batch, k)).float()), k)
        return total / len(subset)

    return forward


def _over_scales(factors: tuple[float, ...]):
    """A stand-in for ``Picker.probability``: the mean of the maps of the image resized by each
    factor (area averaging down, linear up), each resized back to the image's grid."""
    plain = Picker.probability

    def probability(self, image):
        ny, nx = image.shape
        total = np.zeros((ny, nx), dtype=np.float32)
        for factor in factors:
            if factor == 1.0:
                total += plain(self, image)[0]
                continue
            size = (int(round(nx * factor)), int(round(ny * factor)))
            resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
            total += cv2.resize(plain(self, resized)[0], (nx, ny), interpolation=cv2.INTER_LINEAR)
        return total / len(factors), None

    return probability


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="SET=PATH",
                        help="a trained model folder for a set (repeat for sets and seeds)")
    parser.add_argument("--subsets", nargs="*", choices=sorted({**SUBSETS, **PAD_FIRST, **SCALES}),
                        help="default: every one of SUBSETS")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the maps")
    parser.add_argument("--json", type=Path, help="also write every result row to this file")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"tta: no data folder {args.data}; nothing to measure")
        return 0
    torch.set_num_threads(args.threads)
    subsets = args.subsets or list(SUBSETS)
    rows = []
    engine_forward, engine_probability = predict._forward_probability, Picker.probability
    with tempfile.TemporaryDirectory(prefix="cryounet-tta-") as cache:
        for spec in args.model:
            set_name, _, path = spec.partition("=")
            root, model = args.data / set_name, Path(path)
            diameter = float(json.loads((root / "meta.json").read_text())["diameter_px"])
            base = load_model(model).info.config
            label = model.parent.parent.name if model.name == "model" else model.name
            for name in subsets:
                if name in SCALES:
                    Picker.probability = _over_scales(SCALES[name])
                else:
                    predict._forward_probability = (_averaging_over(PAD_FIRST[name], pad_first=True)
                                                     if name in PAD_FIRST else _averaging_over(SUBSETS[name]))
                try:
                    maps = crowded.load_maps(model, root, Path(cache) / name)
                finally:
                    predict._forward_probability, Picker.probability = engine_forward, engine_probability
                result = crowded.run_variant(maps, base, diameter, {})
                rows.append({"set": set_name, "model": str(model), "label": label, "subset": name, **result})
                print(crowded._line(set_name, label, name, result).replace("crowded ", "tta ", 1), flush=True)
    for set_name in dict.fromkeys(r["set"] for r in rows):
        for name in subsets:
            group = [r for r in rows if r["set"] == set_name and r["subset"] == name]
            if len(group) > 1:
                mean = {k: float(np.mean([r[k] for r in group]))
                        for k in ("threshold", "precision", "recall", "f1", "best_f1", "ap")}
                print(crowded._line(set_name, f"mean-of-{len(group)}", name, mean).replace("crowded ", "tta ", 1),
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
