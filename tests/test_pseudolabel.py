"""Pseudo-labelled refinement (cryounet.pseudolabel)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import SimData, gaussian_blobs

from cryounet.config import CryoUNetConfig, RefineConfig
from cryounet.data import LabelledMicrograph, load_labelled, split_validation
from cryounet.errors import CryoUNetError
from cryounet.modelio import load_model
from cryounet.preprocess import Scale
from cryounet.pseudolabel import (REFINE_HISTORY_NAME, binary_entropy, pseudo_label, refine,
                                  round_thresholds)


def test_binary_entropy() -> None:
    h = binary_entropy(np.array([0.5, 0.0, 1.0, 0.1, 0.9]))
    assert h[0] == pytest.approx(1.0)
    assert h[1] < 1e-5 and h[2] < 1e-5
    assert h[3] == pytest.approx(h[4]) == pytest.approx(-(0.1 * np.log2(0.1) + 0.9 * np.log2(0.9)))


def test_round_thresholds_relax_linearly() -> None:
    cfg = RefineConfig(rounds=3, positive_start=0.98, positive_end=0.90,
                       negative_start=0.02, negative_end=0.10)
    assert round_thresholds(cfg, 0) == pytest.approx((0.98, 0.02))
    assert round_thresholds(cfg, 1) == pytest.approx((0.94, 0.06))
    assert round_thresholds(cfg, 2) == pytest.approx((0.90, 0.10))
    assert round_thresholds(RefineConfig(rounds=1), 0) == pytest.approx((0.98, 0.02))


def test_pseudo_label_picks_confident_low_entropy_peaks() -> None:
    blobs = np.array([[20.0, 20.0], [60.0, 20.0], [40.0, 60.0]])
    prob = gaussian_blobs((80, 80), blobs, 3.0, [0.995, 0.95, 0.5]).astype(np.float32)
    image = np.zeros((80, 80), np.float32)
    item = LabelledMicrograph("u", image, np.zeros((0, 2)), Scale((80, 80), (80, 80)), 16.0)
    cfg = CryoUNetConfig()
    labels = pseudo_label(item, prob, cfg, positive=0.98, negative=0.02)
    np.testing.assert_allclose(labels.item.xy, [[20.0, 20.0]], atol=1e-6)
    # Background weight: 1 where the map is confidently empty, 0 elsewhere.
    np.testing.assert_array_equal(labels.item.background, (prob <= 0.02).astype(np.float32))
    assert labels.confidence == pytest.approx(float(((prob <= 0.02) | (prob >= 0.98)).mean()))
    assert labels.item.image is image and labels.item.diameter == 16.0
    # A relaxed positive threshold takes the second blob too ...
    assert len(pseudo_label(item, prob, cfg, 0.9, 0.02).item.xy) == 2
    # ... and a strict entropy limit removes even the most confident one (H(0.995) = 0.045 bits).
    strict = cfg.updated({"refine": {"max_entropy": 0.03}})
    assert len(pseudo_label(item, prob, strict, 0.9, 0.02).item.xy) == 0


def test_refine_argument_errors(tiny_model: Path) -> None:
    model = load_model(tiny_model)
    cfg = model.info.config
    with pytest.raises(CryoUNetError, match="rounds"):
        refine(model, [], [], [], cfg.updated({"refine": {"rounds": 0}}), Path("x"), "cpu")
    with pytest.raises(CryoUNetError, match="refine.positive_end must be between 0 and 1"):
        refine(model, [], [], [], cfg.updated({"refine": {"positive_end": 1.0}}), Path("x"), "cpu")
    with pytest.raises(CryoUNetError, match="no unlabelled micrographs"):
        refine(model, [], [], [], cfg, Path("x"), "cpu")


def test_refine_one_round(tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    model = load_model(tiny_model)
    cfg = model.info.config.updated({
        "refine": {"rounds": 2, "epochs_per_round": 1, "tta": False, "positive_start": 0.6,
                   "positive_end": 0.5, "negative_start": 0.3, "negative_end": 0.4},
        "train": {"steps_per_epoch": 2, "batch_size": 2, "patch_size": 32},
    })
    labelled, _ = load_labelled(sim_data.micrographs[:3], sim_data.folder, sim_data.diameter,
                                cfg.preprocess)
    train_items, valid = split_validation(labelled, 0.34, np.random.default_rng(0))
    # The fourth micrograph, without its picks, is the unlabelled one.
    unlabelled_all, _ = load_labelled(sim_data.micrographs[3:], sim_data.folder, sim_data.diameter,
                                      cfg.preprocess)
    unlabelled = [LabelledMicrograph(it.name, it.image, np.zeros((0, 2)), it.scale, it.diameter)
                  for it in unlabelled_all]
    out = tmp_path / "refined"
    history = refine(model, train_items, valid, unlabelled, cfg, out, "cpu", progress=False)
    assert [r["round"] for r in history] == [0, 1, 2]
    assert history[1]["positive_threshold"] == pytest.approx(0.6)
    assert history[2]["positive_threshold"] == pytest.approx(0.5)
    assert history[1]["micrographs_used"] == 1
    assert json.loads((out / REFINE_HISTORY_NAME).read_text()) == history
    for name in ("round_0", "round_1", "round_2"):
        assert (out / name / "model.safetensors").is_file()
    refined = load_model(out)  # the chosen round is copied to the output folder itself
    best = max(history, key=lambda r: r["valid_f1"])
    assert refined.info.validation["f1"] == pytest.approx(best["valid_f1"])
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
