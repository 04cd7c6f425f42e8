"""Training loop, schedule, validation, determinism and resume (cryounet.training.loop, .validation)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_helpers import AffineNet, SimData, gaussian_blobs

from cryounet.training import loop as training
from cryounet.config import CryoUNetConfig
from cryounet.training.data import LabelledMicrograph, load_labelled, split_validation
from cryounet.errors import CryoUNetError
from cryounet.evaluation.metrics import ThresholdCurve
from cryounet.models.weights import load_model
from cryounet.preprocess import Scale
from cryounet.training.loop import lr_factor, train
from cryounet.training.validation import Validation, mine_hard_negatives, validate

#: Four short epochs of a tiny network (a second or two per run on one thread).
FAST = {"train": {"epochs": 4, "steps_per_epoch": 3, "batch_size": 2, "patch_size": 32,
                  "patience": 0, "warmup_epochs": 1, "num_threads": 1},
        "model": {"base_channels": 4, "depth": 2}}


def _cfg(**train_overrides) -> CryoUNetConfig:
    return CryoUNetConfig().updated(FAST).updated({"train": train_overrides})


@pytest.fixture(scope="module")
def items(sim_data: SimData):
    labelled, _ = load_labelled(sim_data.micrographs, sim_data.folder, sim_data.diameter,
                                CryoUNetConfig().preprocess)
    return split_validation(labelled, 0.25, np.random.default_rng(0))


def _history(folder: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"}
            for r in json.loads((folder / "history.json").read_text())]


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(items, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 4-epoch run (cosine schedule, warm-up 1 epoch, patience 0)."""
    out = tmp_path_factory.mktemp("train") / "reference"
    result = train(*items, _cfg(), 24.0, out, "cpu", progress=False)
    assert len(result.history) == 4 and not result.stopped_early
    return out


# ------------------------------------------------------------------------------- schedule
def test_warmup_is_linear() -> None:
    values = [lr_factor(s, 10, 100, "cosine") for s in range(10)]
    np.testing.assert_allclose(values, np.arange(1, 11) / 10)


def test_cosine_decays_to_zero() -> None:
    assert lr_factor(10, 10, 110, "cosine") == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, "cosine") == pytest.approx(0.5)
    assert lr_factor(35, 10, 110, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(110, 10, 110, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(500, 10, 110, "cosine") == pytest.approx(0.0, abs=1e-12)  # stays there
    values = [lr_factor(s, 10, 110, "cosine") for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_factor(0, 0, 50, "cosine") == pytest.approx(1.0)  # no warm-up


def test_constant_schedule() -> None:
    assert [lr_factor(s, 2, 10, "constant") for s in range(6)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_unknown_schedule_after_warmup() -> None:
    with pytest.raises(CryoUNetError, match="unknown schedule 'linear'"):
        lr_factor(20, 10, 100, "linear")


def test_unknown_schedule_refused_during_warmup() -> None:
    with pytest.raises(CryoUNetError, match="unknown schedule 'linear'"):
        lr_factor(0, 10, 100, "linear")


def test_learning_rate_in_history_follows_schedule(reference: Path) -> None:
    rates = [r["learning_rate"] for r in _history(reference)]
    peak = CryoUNetConfig().train.learning_rate
    # After epoch 1 (= warm-up) the factor is 1; cosine over the remaining 9 steps ends at 0.
    assert rates[0] == pytest.approx(peak)
    assert rates[1] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 3 / 9)))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------ training
def test_training_writes_a_loadable_model_folder(reference: Path, items) -> None:
    names = sorted(p.name for p in reference.iterdir())
    assert names == ["checkpoint.pt", "config.json", "history.json", "model.onnx", "model.safetensors",
                     "validation_curve.json"]
    history = _history(reference)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for r in history:
        assert np.isfinite(r["train_loss"]) and 0 <= r["valid_f1"] <= 1 and 0 <= r["threshold"] <= 1
    model = load_model(reference)
    best = max(history, key=lambda r: r["valid_best_f1"])  # selection compares the best F1
    assert model.info.threshold == pytest.approx(best["threshold"])
    assert model.info.validation["f1"] == pytest.approx(best["valid_f1"])
    assert model.info.validation["best_f1"] == pytest.approx(best["valid_best_f1"])
    assert model.info.diameter_px == 24.0 and not model.network.training
    curve = json.loads((reference / "validation_curve.json").read_text())
    assert max(curve["f1"]) == pytest.approx(best["valid_best_f1"])
    assert all(r["valid_f1"] <= r["valid_best_f1"] + 1e-12 for r in history)


def test_separation_decided_once_logged_and_stored(reference: Path, items, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """``target.separation = "auto"`` is decided on all labelled picks before any target is made;
    the model folder stores the decision, and the log says why."""
    from cryounet.training import data as training_data
    from cryounet.training.targets import resolve_separation
    labelled = [(it.xy, it.diameter) for it in [*items[0], *items[1]]]
    assert load_model(reference).info.config.target.separation == \
        resolve_separation(CryoUNetConfig().target, labelled).separation
    # Every pick gets a neighbour 0.6 diameters away: crowded.
    crowded = [[LabelledMicrograph(it.name, it.image, np.concatenate([it.xy, it.xy + [0.6 * it.diameter, 0]]),
                                   it.scale, it.diameter) for it in part] for part in items]
    seen = []
    real = training_data.make_targets
    monkeypatch.setattr(training_data, "make_targets",
                        lambda *a, **k: seen.append(a[3].separation) or real(*a, **k))
    with caplog.at_level("INFO", logger="cryounet.training.loop"):
        train(*crowded, _cfg(epochs=1), 24.0, tmp_path / "crowded", "cpu", progress=False)
    assert load_model(tmp_path / "crowded").info.config.target.separation == "on"
    assert seen and set(seen) == {"on"}
    assert "separation borders between touching picks: on (auto: 100 % of the" in caplog.text
    off = _cfg(epochs=1).updated({"target": {"separation": "off"}})
    train(*crowded, off, 24.0, tmp_path / "off", "cpu", progress=False)
    assert load_model(tmp_path / "off").info.config.target.separation == "off"


def test_same_seed_gives_identical_runs(reference: Path, items, tmp_path: Path) -> None:
    again = tmp_path / "again"
    train(*items, _cfg(), 24.0, again, "cpu", progress=False)
    assert _history(again) == _history(reference)
    assert (again / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert _same_weights(_final_weights(again), _final_weights(reference))
    other = tmp_path / "other_seed"
    train(*items, _cfg(seed=1, epochs=1), 24.0, other, "cpu", progress=False)
    first = _final_weights(other)
    assert not _same_weights(first, _final_weights(reference))


def test_resume_after_interruption_equals_uninterrupted(reference: Path, items, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "interrupted"
    save = training._save_checkpoint

    def save_then_die(path, network, optimizer, scheduler, epoch, *args):
        save(path, network, optimizer, scheduler, epoch, *args)
        if epoch == 1:  # killed right after the checkpoint of epoch 2
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(*items, _cfg(), 24.0, out, "cpu", progress=False)
    monkeypatch.undo()
    assert len(_history(out)) == 2
    result = train(*items, _cfg(), 24.0, out, "cpu", resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert _history(out) == _history(reference)
    assert _same_weights(_final_weights(out), _final_weights(reference))
    assert (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert result.validation is not None


def test_train_two_epochs_then_resume_to_four(items, tmp_path: Path) -> None:
    # With a schedule that does not depend on the total length, training 2 epochs and resuming to
    # 4 equals training 4 directly.
    cfg4 = _cfg(schedule="constant", warmup_epochs=0)
    direct, resumed = tmp_path / "direct", tmp_path / "resumed"
    train(*items, cfg4, 24.0, direct, "cpu", progress=False)
    train(*items, _cfg(schedule="constant", warmup_epochs=0, epochs=2), 24.0, resumed, "cpu",
          progress=False)
    train(*items, cfg4, 24.0, resumed, "cpu", resume=True, progress=False)
    assert _history(resumed) == _history(direct)
    assert _same_weights(_final_weights(resumed), _final_weights(direct))


def test_resume_without_checkpoint(items, tmp_path: Path) -> None:
    with pytest.raises(CryoUNetError, match="no checkpoint to resume from"):
        train(*items, _cfg(), 24.0, tmp_path / "empty", "cpu", resume=True, progress=False)


def test_early_stopping(items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = ThresholdCurve(np.array([0.5]), np.array([0.5]), np.array([0.5]), np.array([0.5]))
    flat = Validation(curve, 0.5, 0.5, 0.5, 0.5, 0.4, 0.1, 0.5)
    monkeypatch.setattr(training, "validate", lambda *a, **k: flat)
    result = train(*items, _cfg(epochs=10, patience=2, steps_per_epoch=1), 24.0, tmp_path / "m",
                   "cpu", progress=False)
    # Epoch 1 improves (from nothing); epochs 2 and 3 do not: stop after 3.
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def _falling_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation F1 that only gets worse after the first epoch."""
    curve = ThresholdCurve(np.array([0.5]), np.array([0.5]), np.array([0.5]), np.array([0.5]))
    scores = iter(np.linspace(0.9, 0.1, 50))
    monkeypatch.setattr(training, "validate",
                        lambda *a, **k: _validation(curve, float(next(scores))))


def _validation(curve: ThresholdCurve, best_f1: float, f1: float = 0.5) -> Validation:
    return Validation(curve, 0.5, 0.5, 0.5, f1, 0.4, 0.1, best_f1)


def test_selection_compares_the_best_f1_not_the_f1_at_the_calibrated_threshold(
        items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = ThresholdCurve(np.array([0.5]), np.array([0.5]), np.array([0.5]), np.array([0.5]))
    # The F1 at the calibrated threshold falls while the best F1 rises: epoch 3 is kept.
    runs = iter([_validation(curve, 0.6, 0.6), _validation(curve, 0.7, 0.5),
                 _validation(curve, 0.8, 0.4)])
    monkeypatch.setattr(training, "validate", lambda *a, **k: next(runs, _validation(curve, 0.8, 0.4)))
    result = train(*items, _cfg(epochs=3, steps_per_epoch=1), 24.0, tmp_path / "m", "cpu",
                   progress=False)
    assert result.best_epoch == 3


def test_selection_last_keeps_the_final_epoch(items, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _falling_validation(monkeypatch)
    out = tmp_path / "m"
    result = train(*items, _cfg(epochs=4, patience=1, selection="last"), 24.0, out, "cpu",
                   progress=False)
    # Patience is ignored: every epoch runs, and the final weights are the ones kept.
    assert not result.stopped_early and len(result.history) == 4 and result.best_epoch == 4
    kept = load_model(out).network.state_dict()
    assert _same_weights(kept, _final_weights(out))


def test_selection_best_keeps_the_best_epoch(items, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _falling_validation(monkeypatch)
    out = tmp_path / "m"
    result = train(*items, _cfg(epochs=4, selection="best"), 24.0, out, "cpu", progress=False)
    assert result.best_epoch == 1
    assert not _same_weights(load_model(out).network.state_dict(), _final_weights(out))


def test_selection_last_with_time_limit_keeps_the_epoch_it_stopped_at(
        items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _falling_validation(monkeypatch)
    out = tmp_path / "m"
    # A limit already exceeded after the first epoch.
    result = train(*items, _cfg(epochs=6, selection="last", time_limit_minutes=1e-9), 24.0, out,
                   "cpu", progress=False)
    assert result.stopped_early and len(result.history) == 1 and result.best_epoch == 1
    assert _same_weights(load_model(out).network.state_dict(), _final_weights(out))


def test_divergence_is_a_user_error(items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "build_loss",
                        lambda cfg: lambda lg, t, w: (lg * float("nan")).mean())
    with pytest.raises(CryoUNetError, match="diverged at epoch 1"):
        train(*items, _cfg(), 24.0, tmp_path / "m", "cpu", progress=False)


def test_init_weights(reference: Path, items, tmp_path: Path) -> None:
    # Zero learning rate: the run keeps the initial weights exactly.
    result = train(*items, _cfg(epochs=1, learning_rate=0.0, weight_decay=0.0), 24.0,
                   tmp_path / "m", "cpu", init_weights=reference / "model.safetensors", progress=False)
    assert result.best_epoch == 1
    start = load_model(reference).network.state_dict()
    after = _final_weights(tmp_path / "m")
    for k, v in start.items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, after[k]), k


def test_hard_negative_mining_run(items, tmp_path: Path) -> None:
    result = train(*items, _cfg(epochs=2, hard_negative_fraction=0.5, hard_negative_start=1),
                   24.0, tmp_path / "m", "cpu", progress=False)
    assert len(result.history) == 2


# ---------------------------------------------------------------------------- validation
def _blob_item(picked: np.ndarray, blobs: np.ndarray, name: str = "v") -> LabelledMicrograph:
    image = gaussian_blobs((96, 96), blobs, 1.5, 10.0).astype(np.float32)
    return LabelledMicrograph(name, image, picked, Scale((96, 96), (96, 96)), 16.0)


def test_validate_calibrates_threshold_on_a_perfect_map() -> None:
    blobs = np.array([[20.0, 20.0], [60.0, 30.0], [40.0, 70.0]])
    item = _blob_item(blobs, blobs)
    cfg = CryoUNetConfig().updated({"pick": {"edge_exclusion": 0.0}})
    result = validate(AffineNet(1.0, -5.0), [item], cfg, "cpu")
    assert result.f1 == 1.0 and result.precision == 1.0 and result.ap == pytest.approx(1.0)
    assert 0.5 < result.threshold <= 1.0  # the blobs' probability, above the background's
    assert result.curve.f1.max() == 1.0


def test_validate_counts_misses_and_false_positives() -> None:
    blobs = np.array([[20.0, 20.0], [60.0, 30.0], [40.0, 70.0]])
    picked = np.array([[20.0, 20.0], [60.0, 30.0], [80.0, 80.0]])  # one blob unpicked, one pick empty
    cfg = CryoUNetConfig().updated({"pick": {"edge_exclusion": 0.0}})
    result = validate(AffineNet(1.0, -5.0), [_blob_item(picked, blobs)], cfg, "cpu")
    assert result.precision == pytest.approx(2 / 3) and result.recall == pytest.approx(2 / 3)


def test_validate_calibrates_at_the_configured_tolerance() -> None:
    # Five blobs of falling brightness; the 1st, 3rd and 5th are picked: a jagged F1 curve.
    centres = np.array([[15.0, 15.0], [50.0, 15.0], [80.0, 20.0], [20.0, 60.0], [60.0, 70.0]])
    image = sum(a * gaussian_blobs((96, 96), centres[i:i + 1], 1.5, 10.0)
                for i, a in enumerate([1.0, 0.9, 0.8, 0.7, 0.6])).astype(np.float32)
    item = LabelledMicrograph("v", image, centres[[0, 2, 4]], Scale((96, 96), (96, 96)), 16.0)
    thresholds = {}
    for tolerance in (0.0, 0.3):
        cfg = CryoUNetConfig().updated({"pick": {"edge_exclusion": 0.0},
                                        "train": {"calibration_tolerance": tolerance}})
        result = validate(AffineNet(1.0, -5.0), [item], cfg, "cpu")
        curve = result.curve
        assert result.threshold == curve.thresholds[curve.calibrated_index(tolerance)]
        assert result.best_f1 == curve.f1.max() and result.f1 <= result.best_f1
        thresholds[tolerance] = result.threshold
    # Best F1 (0.75) picks all five; within 0.3 of it every threshold counts, and their middle
    # is higher.
    assert thresholds[0.3] > thresholds[0.0]


def test_mine_hard_negatives_returns_unpicked_peaks() -> None:
    blobs = np.array([[20.0, 20.0], [60.0, 30.0], [40.0, 70.0]])
    item = _blob_item(blobs[:2], blobs)
    cfg = CryoUNetConfig().updated({"pick": {"edge_exclusion": 0.0}})
    mined = mine_hard_negatives(AffineNet(1.0, -5.0), [item], cfg, "cpu")
    assert len(mined) == 1
    np.testing.assert_allclose(mined[0], [[40.0, 70.0]], atol=1e-6)


# ------------------------------------------------------------------- hard-negative mining
class FixedLogits(torch.nn.Module):
    """A stub network: the same logit map whatever the input (shape-preserving, multiple 1)."""

    multiple = 1

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2:] == self.logits.shape
        return self.logits.expand(x.shape[0], 1, *self.logits.shape).clone()


def _logit_map(shape, peaks, probs, sigma: float = 2.0) -> np.ndarray:
    prob = 1e-4 + gaussian_blobs(shape, peaks, sigma, np.asarray(probs) - 1e-4)
    return np.log(prob / (1 - prob))


def test_mine_hard_negatives_keeps_only_peaks_far_from_every_pick() -> None:
    d = 16.0  # matching radius 8 px
    peaks = np.array([[20.0, 20.0],   # on a pick: a true positive
                      [70.0, 20.0],   # no pick anywhere near: a hard negative
                      [26.0, 70.0],   # 6 px (< 0.5 d) from the pick at (20, 70): matched
                      [79.0, 70.0],   # 9 px (> 0.5 d) from the pick at (70, 70): a hard negative
                      [48.0, 45.0]])  # below the 0.5 level: not a peak at all
    picks = np.array([[20.0, 20.0], [20.0, 70.0], [70.0, 70.0], [48.0, 88.0]])
    logits = _logit_map((96, 96), peaks, [0.95, 0.9, 0.9, 0.8, 0.3])
    item = LabelledMicrograph("m", np.zeros((96, 96), np.float32), picks, Scale((96, 96), (96, 96)), d)
    cfg = CryoUNetConfig().updated({"pick": {"edge_exclusion": 0.0}})
    mined = mine_hard_negatives(FixedLogits(logits), [item], cfg, "cpu")
    assert len(mined) == 1
    got = mined[0][np.lexsort((mined[0][:, 1], mined[0][:, 0]))]
    np.testing.assert_allclose(got, [[70.0, 20.0], [79.0, 70.0]], atol=1e-3)
    for xy in got:
        assert np.linalg.norm(picks - xy, axis=1).min() >= 0.5 * d
    # A micrograph without picks: every peak above the level is a hard negative.
    empty = LabelledMicrograph("e", item.image, np.zeros((0, 2)), item.scale, d)
    assert len(mine_hard_negatives(FixedLogits(logits), [empty], cfg, "cpu")[0]) == 4
    # The level is honoured.
    strict = mine_hard_negatives(FixedLogits(logits), [item], cfg, "cpu", level=0.85)
    np.testing.assert_allclose(strict[0], [[70.0, 20.0]], atol=1e-3)


def test_mine_hard_negatives_one_array_per_micrograph() -> None:
    logits = _logit_map((64, 64), [[30.0, 30.0]], [0.9])
    cfg = CryoUNetConfig().updated({"pick": {"edge_exclusion": 0.0}})
    items = [LabelledMicrograph(n, np.zeros((64, 64), np.float32), xy, Scale((64, 64), (64, 64)), 16.0)
             for n, xy in (("a", np.array([[30.0, 31.0]])), ("b", np.array([[5.0, 5.0]])))]
    mined = mine_hard_negatives(FixedLogits(logits), items, cfg, "cpu")
    assert len(mined) == 2 and mined[0].shape == (0, 2) and len(mined[1]) == 1


def _spy_mining(monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """Record the calls of ``mine_hard_negatives`` and the hard negatives each sampler got."""
    calls, given = [], []
    real_mine, real_sampler = training.mine_hard_negatives, training.PatchSampler

    def mine(*args, **kwargs):
        calls.append(1)
        return real_mine(*args, **kwargs)

    def sampler(items, cfg, patch, rng, hard=None):
        given.append(hard)
        return real_sampler(items, cfg, patch, rng, hard)

    monkeypatch.setattr(training, "mine_hard_negatives", mine)
    monkeypatch.setattr(training, "PatchSampler", sampler)
    return calls, given


def test_hard_negative_training_is_deterministic(items, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls, given = _spy_mining(monkeypatch)
    cfg = _cfg(epochs=2, hard_negative_fraction=0.3, hard_negative_start=1)
    first = train(*items, cfg, 24.0, tmp_path / "a", "cpu", progress=False)
    assert len(first.history) == 2 and len(calls) == 2  # mined before each epoch from epoch 1
    assert all(h is not None and len(h) == len(items[0]) for h in given)
    train(*items, cfg, 24.0, tmp_path / "b", "cpu", progress=False)
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    assert _same_weights(_final_weights(tmp_path / "a"), _final_weights(tmp_path / "b"))
    # Same mined hard negatives in both runs.
    for x, y in zip(given[:2], given[2:]):
        assert all(np.array_equal(a, b) for a, b in zip(x, y))


def test_hard_negative_start_and_off(items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, given = _spy_mining(monkeypatch)
    train(*items, _cfg(epochs=2, steps_per_epoch=1, hard_negative_fraction=0.3,
                       hard_negative_start=2), 24.0, tmp_path / "late", "cpu", progress=False)
    assert len(calls) == 1 and given[0] is None and given[1] is not None
    calls.clear()
    given.clear()
    train(*items, _cfg(epochs=2, steps_per_epoch=1, hard_negative_start=1), 24.0,
          tmp_path / "off", "cpu", progress=False)  # fraction 0 (the default): never mined
    assert calls == [] and given == [None, None]


def test_hard_negatives_change_the_training_patches(items, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # With the same seed, mined hard negatives (here: a fixed false positive per micrograph)
    # change what is trained on; with nothing mined the run equals one without mining.
    def mine_fixed(network, train_items, cfg, device, level=0.5):
        return [np.array([[10.0, 10.0]]) for _ in train_items]

    def mine_none(network, train_items, cfg, device, level=0.5):
        return [np.zeros((0, 2)) for _ in train_items]

    cfg = _cfg(epochs=1, hard_negative_fraction=0.5, hard_negative_start=1)
    train(*items, _cfg(epochs=1), 24.0, tmp_path / "plain", "cpu", progress=False)
    monkeypatch.setattr(training, "mine_hard_negatives", mine_none)
    train(*items, cfg, 24.0, tmp_path / "none", "cpu", progress=False)
    monkeypatch.setattr(training, "mine_hard_negatives", mine_fixed)
    train(*items, cfg, 24.0, tmp_path / "fixed", "cpu", progress=False)
    plain, none, fixed = (_final_weights(tmp_path / n) for n in ("plain", "none", "fixed"))
    assert _same_weights(plain, none)
    assert not _same_weights(plain, fixed)


def test_training_calibrates_a_tta_threshold(tiny_model: Path) -> None:
    """The model folder stores a second threshold calibrated on TTA-averaged maps, and it loads."""
    import json

    from cryounet.io.model_folder import read_model_info

    data = json.loads((tiny_model / "config.json").read_text())
    assert 0 < data["threshold_tta"] <= 1
    assert data["config"]["pick"]["tta_symmetries"] == 4  # what threshold_tta was calibrated over
    assert set(data["validation_tta"]) == {"precision", "recall", "f1", "ap", "best_f1"}
    info = read_model_info(tiny_model)
    assert info.threshold_tta == pytest.approx(data["threshold_tta"])
    assert info.validation_tta["f1"] == pytest.approx(data["validation_tta"]["f1"])


@pytest.mark.parametrize("tta, count", [(True, 4), (True, 8), (False, 8)])
def test_validation_and_pseudo_labels_average_over_the_configured_symmetries(
        items, tta: bool, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration (validation) and pseudo-labelling predict with ``pick.tta_symmetries``, as picking does."""
    from cryounet.inference import predict
    from cryounet.models import build_model
    from cryounet.training import refine, validation

    seen = []

    def recording(*args, **kwargs):
        seen.append((args[5], args[7]))  # tta, tta_symmetries
        return predict.predict_probability(*args, **kwargs)

    monkeypatch.setattr(validation, "predict_probability", recording)
    monkeypatch.setattr(refine, "predict_probability", recording)
    cfg = _cfg().updated({"pick": {"tta_symmetries": count}, "refine": {"tta": tta}})
    network = build_model(cfg.model).eval()
    validation.pick_candidates(network, items[1], cfg, "cpu", tta=tta)
    assert seen == [(tta, count)] * len(items[1])
    seen.clear()
    monkeypatch.setattr(refine, "load_weights", lambda net, path: None)  # the network above as the member
    refine._ensemble_probabilities(network, [Path("member.safetensors")], items[1], cfg, "cpu")
    assert seen == [(tta, count)] * len(items[1])


def test_stop_after_trains_that_many_epochs_of_the_same_schedule(items, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = train(*items, _cfg(), 24.0, out, "cpu", progress=False, stop_after=2)
    # The first two epochs of the 4-epoch run, learning rates included: the schedule is not shortened.
    assert len(result.history) == 2 and result.best_epoch == 2
    assert _history(out) == _history(reference)[:2]
    assert _same_weights(load_model(out).network.state_dict(), _final_weights(out))


def test_stop_after_keeps_the_last_epoch_whatever_the_selection_says(
        items, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _falling_validation(monkeypatch)
    out = tmp_path / "m"
    # selection best with patience 1 would stop after epoch 2 and keep epoch 1.
    result = train(*items, _cfg(epochs=4, patience=1, selection="best"), 24.0, out, "cpu",
                   progress=False, stop_after=3)
    assert not result.stopped_early and len(result.history) == 3 and result.best_epoch == 3
    assert _same_weights(load_model(out).network.state_dict(), _final_weights(out))


@pytest.mark.parametrize("stop_after", [0, 5])
def test_stop_after_outside_the_schedule_is_refused(items, tmp_path: Path, stop_after: int) -> None:
    with pytest.raises(CryoUNetError, match=f"stop_after must be between 1 and train.epochs = 4, got {stop_after}"):
        train(*items, _cfg(), 24.0, tmp_path / "m", "cpu", progress=False, stop_after=stop_after)
