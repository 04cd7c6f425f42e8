"""Pseudo-labelled refinement (cryounet.training.refine)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import SimData, gaussian_blobs

from cryounet.config import CryoUNetConfig, RefineConfig
from cryounet.training.data import LabelledMicrograph, load_labelled, split_validation
from cryounet.errors import CryoUNetError
from cryounet.models.weights import load_model
from cryounet.preprocess import Scale
from cryounet.inference.onnx_picker import load_onnx_model
from cryounet.io.model_folder import REFINE_HISTORY_NAME, weights_digest
from cryounet.training.refine import binary_entropy, pseudo_label, refine, round_thresholds


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
    # The one unlabelled micrograph is trained on with its pseudo-picks, or left out without any.
    for record in history[1:]:
        assert record["micrographs_used"] + record["micrographs_without_picks"] == 1
        assert (record["pseudo_positives"] > 0) == (record["micrographs_used"] == 1)
    assert json.loads((out / REFINE_HISTORY_NAME).read_text()) == history
    for name in ("round_0", "round_1", "round_2"):
        assert (out / name / "model.safetensors").is_file()
    refined = load_model(out)  # the chosen round is copied to the output folder itself
    best = max(history, key=lambda r: r["valid_best_f1"])  # rounds are compared on the best F1
    assert refined.info.validation["best_f1"] == pytest.approx(best["valid_best_f1"])
    assert refined.info.validation["f1"] == pytest.approx(best["valid_f1"])
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
    # Its model.onnx came with it: a graph of the copied weights, so it picks with ONNX Runtime.
    assert load_onnx_model(out, 1).network.weights_sha256 == weights_digest(out)


# ------------------------------------------------------------ accuracy programme: refinement
@pytest.mark.parametrize("rounds", [2, 3, 5])
def test_default_thresholds_go_from_strict_to_relaxed(rounds: int) -> None:
    cfg = RefineConfig(rounds=rounds)
    assert round_thresholds(cfg, 0) == pytest.approx((0.98, 0.02))
    assert round_thresholds(cfg, rounds - 1) == pytest.approx((0.90, 0.10))
    steps = [round_thresholds(cfg, r) for r in range(rounds)]
    assert all(a[0] > b[0] and a[1] < b[1] for a, b in zip(steps, steps[1:]))


def test_binary_entropy_shape_and_symmetry() -> None:
    p = np.linspace(0.0, 1.0, 101)
    h = binary_entropy(p)
    assert h.shape == p.shape and h.max() == pytest.approx(1.0) and h[50] == pytest.approx(1.0)
    np.testing.assert_allclose(h, h[::-1], atol=1e-12)
    assert (np.diff(h[:51]) > 0).all()  # rises to the coin flip
    assert binary_entropy(np.float32(0.0)) < 1e-5 and binary_entropy(1.0) < 1e-5


def _item(shape=(80, 80)) -> LabelledMicrograph:
    return LabelledMicrograph("u", np.zeros(shape, np.float32), np.zeros((0, 2)),
                              Scale(shape, shape), 16.0)


def test_pseudo_label_thresholds_are_inclusive() -> None:
    # Exactly representable values: a peak of 0.75 at a positive threshold of 0.75 is kept, and
    # pixels at exactly the negative threshold (0.25) are background.
    prob = np.full((80, 80), 0.5, np.float32)
    prob[20:40, 20:40] = 0.25
    prob[60, 60] = 0.75
    cfg = CryoUNetConfig().updated({"refine": {"max_entropy": 1.0}})
    labels = pseudo_label(_item(), prob, cfg, positive=0.75, negative=0.25)
    np.testing.assert_allclose(labels.item.xy, [[60.0, 60.0]])
    np.testing.assert_array_equal(labels.item.background, (prob == 0.25).astype(np.float32))
    assert labels.item.background.sum() == 400
    # Just above the peak: no pseudo-pick; just below the background level: no background.
    assert len(pseudo_label(_item(), prob, cfg, 0.7501, 0.25).item.xy) == 0
    assert pseudo_label(_item(), prob, cfg, 0.75, 0.2499).item.background.sum() == 0


def test_pseudo_label_entropy_limit_is_inclusive() -> None:
    prob = np.zeros((80, 80), np.float32)
    prob[40, 40] = 0.75
    h = float(binary_entropy(np.float32(0.75)))  # ~0.811 bits
    at = CryoUNetConfig().updated({"refine": {"max_entropy": h}})
    below = CryoUNetConfig().updated({"refine": {"max_entropy": h - 1e-6}})
    assert len(pseudo_label(_item(), prob, at, 0.7, 0.1).item.xy) == 1
    assert len(pseudo_label(_item(), prob, below, 0.7, 0.1).item.xy) == 0


def test_pseudo_label_confidence_ranks_maps() -> None:
    sure = np.zeros((40, 40), np.float32)
    sure[10, 10] = 0.99
    unsure = np.full((40, 40), 0.5, np.float32)
    cfg = CryoUNetConfig()
    a = pseudo_label(_item((40, 40)), sure, cfg, 0.98, 0.02)
    b = pseudo_label(_item((40, 40)), unsure, cfg, 0.98, 0.02)
    assert a.confidence == 1.0 and b.confidence == 0.0
    assert len(b.item.xy) == 0 and b.item.background.sum() == 0


@pytest.fixture(scope="module")
def refine_data(sim_data: SimData):
    """Labelled training (mic_000), validation (mic_001) and three unlabelled micrographs."""
    model_cfg = CryoUNetConfig()
    labelled, _ = load_labelled(sim_data.micrographs, sim_data.folder, sim_data.diameter,
                                model_cfg.preprocess)
    unlabelled = [LabelledMicrograph(f"u{i}", it.image, np.zeros((0, 2)), it.scale, it.diameter)
                  for i, it in enumerate(labelled[1:])]
    return [labelled[0]], [labelled[1]], unlabelled


def _refine_cfg(model, **refine_overrides) -> CryoUNetConfig:
    return model.info.config.updated({
        "refine": {"rounds": 3, "epochs_per_round": 1, "tta": False, "skip_empty": False,
                   **refine_overrides},
        "train": {"steps_per_epoch": 1, "batch_size": 2, "patch_size": 32}})


def _spy_on_training(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the micrograph names of every training run refine() starts."""
    from cryounet.training import refine as pseudolabel

    trained_on: list[list[str]] = []
    real_train = pseudolabel.train

    def spy_train(items, *args, **kwargs):
        trained_on.append([it.name for it in items])
        return real_train(items, *args, **kwargs)

    monkeypatch.setattr(pseudolabel, "train", spy_train)
    return trained_on


@pytest.mark.parametrize("curriculum, used", [(True, [1, 2, 3]), (False, [3, 3, 3])])
def test_curriculum_micrographs_per_round(tiny_model: Path, refine_data, tmp_path: Path,
                                          curriculum: bool, used: list) -> None:
    model = load_model(tiny_model)
    train_items, valid, unlabelled = refine_data
    cfg = _refine_cfg(model, curriculum=curriculum, checkpoint_ensemble=1)
    out = tmp_path / "refined"
    history = refine(model, train_items, valid, unlabelled, cfg, out, "cpu", progress=False)
    saved = json.loads((out / REFINE_HISTORY_NAME).read_text())
    assert saved == history
    # ceil((r + 1) / rounds * n) most confident micrographs in round r (0-based), n = 3.
    assert [r["micrographs_used"] for r in saved[1:]] == used
    assert [r["round"] for r in saved] == [0, 1, 2, 3]
    for record in saved:
        assert {"round", "positive_threshold", "negative_threshold", "pseudo_positives",
                "micrographs_used", "valid_f1"} <= set(record)
    assert saved[0]["positive_threshold"] is None and saved[0]["micrographs_used"] == 0
    assert [r["positive_threshold"] for r in saved[1:]] == pytest.approx([0.98, 0.94, 0.90])
    assert [r["negative_threshold"] for r in saved[1:]] == pytest.approx([0.02, 0.06, 0.10])
    refined = load_model(out)  # the output folder is a model folder
    assert refined.info.diameter_px == model.info.diameter_px
    assert refined.info.config.model == model.info.config.model


def test_curriculum_takes_the_most_confident_first(tiny_model: Path, refine_data, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from cryounet.training import refine as pseudolabel

    confidence = {"u0": 0.2, "u1": 0.9, "u2": 0.5}
    real = pseudolabel.pseudo_label

    def fixed_confidence(item, prob, cfg, positive, negative):
        labels = real(item, prob, cfg, positive, negative)
        return pseudolabel.PseudoLabels(labels.item, confidence[item.name])

    trained_on = _spy_on_training(monkeypatch)
    monkeypatch.setattr(pseudolabel, "pseudo_label", fixed_confidence)
    model = load_model(tiny_model)
    train_items, valid, unlabelled = refine_data
    refine(model, train_items, valid, unlabelled, _refine_cfg(model, checkpoint_ensemble=1),
           tmp_path / "r", "cpu", progress=False)
    labelled = [it.name for it in train_items]
    assert trained_on == [labelled + ["u1"], labelled + ["u1", "u2"], labelled + ["u1", "u2", "u0"]]


@pytest.mark.parametrize("ensemble, expected", [
    (1, [["round_0"], ["round_1"], ["round_2"]]),
    (2, [["round_0"], ["round_0", "round_1"], ["round_1", "round_2"]]),
    (5, [["round_0"], ["round_0", "round_1"], ["round_0", "round_1", "round_2"]]),
])
def test_checkpoint_ensemble_members(tiny_model: Path, refine_data, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, ensemble: int,
                                     expected: list) -> None:
    from cryounet.training import refine as pseudolabel

    loaded: list[str] = []
    maps: list[tuple[str, np.ndarray]] = []  # (checkpoint, probability) per prediction
    labelled_probs: list[np.ndarray] = []
    real_load, real_predict, real_label = (pseudolabel.load_weights, pseudolabel.predict_probability,
                                           pseudolabel.pseudo_label)

    def spy_load(network, path):
        loaded.append(Path(path).parent.name)
        return real_load(network, path)

    def spy_predict(*args, **kwargs):
        prob = real_predict(*args, **kwargs)
        maps.append((loaded[-1], prob))
        return prob

    def spy_label(item, prob, *args):
        labelled_probs.append(prob.copy())
        return real_label(item, prob, *args)

    monkeypatch.setattr(pseudolabel, "load_weights", spy_load)
    monkeypatch.setattr(pseudolabel, "predict_probability", spy_predict)
    monkeypatch.setattr(pseudolabel, "pseudo_label", spy_label)
    model = load_model(tiny_model)
    train_items, valid, unlabelled = refine_data
    refine(model, train_items, valid, unlabelled, _refine_cfg(model, checkpoint_ensemble=ensemble),
           tmp_path / "r", "cpu", progress=False)
    n = len(unlabelled)
    rounds, start = [], 0
    for members in expected:
        rounds.append(loaded[start : start + len(members)])
        start += len(members)
    assert rounds == expected and start == len(loaded)
    # The pseudo-labels of each micrograph come from the mean map of the round's members.
    start = 0
    for r, members in enumerate(expected):
        chunk = maps[start : start + n * len(members)]
        start += n * len(members)
        for i in range(n):
            mean = np.mean([chunk[m * n + i][1] for m in range(len(members))], axis=0)
            np.testing.assert_allclose(labelled_probs[r * n + i], mean, atol=1e-6)


@pytest.mark.parametrize("skip_empty", [True, False])
def test_micrographs_without_pseudo_picks(tiny_model: Path, refine_data, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, skip_empty: bool) -> None:
    """A micrograph whose map yields no pseudo-pick is left out (skip_empty) instead of being
    trained on as background only."""
    from cryounet.training import refine as pseudolabel

    real = pseudolabel.pseudo_label

    def one_with_picks(item, prob, cfg, positive, negative):
        labels = real(item, prob, cfg, positive, negative)
        xy = np.array([[20.0, 20.0]]) if item.name == "u1" else np.zeros((0, 2))
        return pseudolabel.PseudoLabels(
            LabelledMicrograph(item.name, item.image, xy, item.scale, item.diameter,
                               labels.item.background), {"u0": 0.9, "u1": 0.5, "u2": 0.1}[item.name])

    trained_on = _spy_on_training(monkeypatch)
    monkeypatch.setattr(pseudolabel, "pseudo_label", one_with_picks)
    model = load_model(tiny_model)
    train_items, valid, unlabelled = refine_data
    cfg = _refine_cfg(model, checkpoint_ensemble=1, curriculum=False, rounds=1,
                      skip_empty=skip_empty)
    history = refine(model, train_items, valid, unlabelled, cfg, tmp_path / "r", "cpu",
                     progress=False)
    labelled = [it.name for it in train_items]
    if skip_empty:
        assert trained_on == [labelled + ["u1"]]
        assert history[1]["micrographs_used"] == 1
    else:
        assert trained_on == [labelled + ["u0", "u1", "u2"]]
        assert history[1]["micrographs_used"] == 3
    assert history[1]["micrographs_without_picks"] == 2
    assert history[1]["pseudo_positives"] == 1
