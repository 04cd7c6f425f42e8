"""Cross-fitted threshold calibration (cryounet.training.crossfit, ``train.calibration_folds``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import TINY_CONFIG, SimData, error_line

from cryounet.config import CryoUNetConfig
from cryounet.errors import CryoUNetError
from cryounet.io.model_folder import read_model_info
from cryounet.io.outputs import MARKER_NAME, is_incomplete
from cryounet.models.weights import load_model
from cryounet.preprocess import Scale
from cryounet.training.crossfit import make_folds
from cryounet.training.data import LabelledMicrograph, load_labelled
from cryounet.training.validation import Candidates, calibrate, pick_candidates


def _item(name: str) -> LabelledMicrograph:
    return LabelledMicrograph(name, np.zeros((8, 8), np.float32), np.zeros((1, 2)), Scale((8, 8), (8, 8)), 2.0)


def test_folds_hold_out_each_training_micrograph_once_and_train_on_all_others():
    train = [_item(f"t{i}") for i in range(5)]
    valid = [_item("v")]
    folds = make_folds(train, valid, 3)
    assert [f.index for f in folds] == [1, 2]
    assert [[i.name for i in f.held_out] for f in folds] == [["t0", "t2", "t4"], ["t1", "t3"]]
    for fold in folds:
        names = {i.name for i in fold.train}
        assert names.isdisjoint(i.name for i in fold.held_out)
        assert names | {i.name for i in fold.held_out} == {"t0", "t1", "t2", "t3", "t4", "v"}
    lomo = make_folds(train, valid, 6)
    assert [[i.name for i in f.held_out] for f in lomo] == [["t0"], ["t1"], ["t2"], ["t3"], ["t4"]]


def test_training_only_micrographs_train_every_fold_and_are_never_held_out():
    train, valid, extra = [_item(f"t{i}") for i in range(4)], [_item("v")], [_item("s0"), _item("s1")]
    folds = make_folds(train, valid, 3, train_only=extra)
    for fold in folds:
        assert {"s0", "s1"} <= {i.name for i in fold.train}
        assert {"s0", "s1"}.isdisjoint(i.name for i in fold.held_out)
    assert sorted(i.name for f in folds for i in f.held_out) == ["t0", "t1", "t2", "t3"]


def test_too_many_folds_for_the_training_micrographs_is_refused():
    with pytest.raises(CryoUNetError, match="at least 4 training micrographs.*at most 3 folds"):
        make_folds([_item("a"), _item("b")], [_item("v")], 5)
    with pytest.raises(CryoUNetError, match="at least 2"):
        make_folds([_item("a")], [_item("v")], 1)


@pytest.mark.parametrize("folds", [1, -2])
def test_config_refuses_one_or_negative_folds(folds: int):
    with pytest.raises(CryoUNetError, match="calibration_folds must be 0"):
        CryoUNetConfig().updated({"train": {"calibration_folds": folds}}).validate("test")


def _crossfit_config(tmp_path: Path, folds: int, fold_epochs: str = "own") -> Path:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["train"]["calibration_folds"] = folds
    cfg["train"]["fold_epochs"] = fold_epochs
    path = tmp_path / f"crossfit-{fold_epochs}.json"
    path.write_text(json.dumps(cfg))
    return path


def _train_argv(sim_data: SimData, out: Path, config: Path) -> list:
    mics = sim_data.micrographs
    return ["train", "--micrographs", *mics[:3], "--coordinates", sim_data.folder,
            "--valid-micrographs", mics[3], "--valid-coordinates", sim_data.folder,
            "--diameter", sim_data.diameter, "--output", out, "--config", config, "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def crossfit_run(sim_data: SimData, tmp_path_factory: pytest.TempPathFactory):
    """A 3-fold cross-fitted training (two fold models) through the CLI."""
    from conftest import _cli

    tmp = tmp_path_factory.mktemp("crossfit")
    out = tmp / "model"
    config = _crossfit_config(tmp, 3)
    assert _cli(_train_argv(sim_data, out, config)) == 0
    return out, config


def test_the_threshold_is_calibrated_on_every_fold_picked_by_the_model_that_did_not_see_it(
        crossfit_run, sim_data: SimData):
    out, _ = crossfit_run
    for j in (1, 2):
        assert (out / f"fold_{j}" / "model.safetensors").is_file()
        assert not is_incomplete(out / f"fold_{j}")
    assert not is_incomplete(out)
    info = read_model_info(out)
    cfg = info.config
    labelled, _ = load_labelled(sim_data.micrographs, sim_data.folder, sim_data.diameter, cfg.preprocess)
    by_name = {item.name: item for item in labelled}
    train_names = [p.stem for p in sim_data.micrographs[:3]]
    # Round-robin over the 3 training micrographs: fold 1 holds out the 1st and 3rd, fold 2 the 2nd.
    pairs = [(out, [by_name[sim_data.micrographs[3].stem]]),
             (out / "fold_1", [by_name[train_names[0]], by_name[train_names[2]]]),
             (out / "fold_2", [by_name[train_names[1]]])]
    plain, tta = Candidates(), Candidates()
    for folder, items in pairs:
        network = load_model(folder).network
        plain.extend(pick_candidates(network, items, cfg, "cpu"))
        tta.extend(pick_candidates(network, items, cfg, "cpu", tta=True))
    expected_plain = calibrate(plain, cfg.train.calibration_tolerance)
    expected_tta = calibrate(tta, cfg.train.calibration_tolerance)
    assert info.threshold == pytest.approx(expected_plain.threshold)
    assert info.threshold_tta == pytest.approx(expected_tta.threshold)
    assert info.validation["f1"] == pytest.approx(expected_plain.f1)
    assert info.validation_tta["ap"] == pytest.approx(expected_tta.ap)
    assert info.calibration["folds"] == 3
    assert info.calibration["micrographs"] == 4
    assert info.calibration["picks"] == sum(len(item.xy) for item in labelled)
    # The fold models are plain models, calibrated on their own held-out fold, and never cross-fit.
    fold_info = read_model_info(out / "fold_1")
    assert fold_info.calibration == {} and fold_info.config.train.calibration_folds == 0


def _interrupted_copy(reference: Path, tmp_path: Path) -> Path:
    """A copy of a finished cross-fitted run whose folder and fold 2 are marked unfinished."""
    import shutil

    out = tmp_path / "model"
    shutil.copytree(reference, out)
    for folder in (out / "fold_2", out):
        (folder / MARKER_NAME).write_text(json.dumps({"command": "train", "complete": False}))
    return out


def test_an_interrupted_cross_fitted_run_resumes_keeping_finished_folds(crossfit_run, sim_data: SimData,
                                                                        tmp_path: Path, run_cli):
    reference, config = crossfit_run
    # As if killed after fold 2's last epoch (its folder not marked complete) and before the main
    # model started: fold 1 is kept, fold 2 continues from its checkpoint, the main model trains.
    out = _interrupted_copy(reference, tmp_path)
    for name in ("model.safetensors", "checkpoint.pt", "config.json", "history.json", "validation_curve.json"):
        (out / name).unlink()
    fold_weights = (out / "fold_1" / "model.safetensors").read_bytes()
    rc, _, err = run_cli(*[a for a in _train_argv(sim_data, out, config) if a != "--quiet"], "--resume")
    assert rc == 0, err
    assert "calibration fold 1/2: kept" in err and "calibration fold 2/2: training" in err
    assert "resuming after epoch 2" in err
    assert (out / "fold_1" / "model.safetensors").read_bytes() == fold_weights
    assert not is_incomplete(out / "fold_2")
    # Training is deterministic, so the resumed run ends where the uninterrupted one did.
    assert read_model_info(out).threshold == pytest.approx(read_model_info(reference).threshold)
    assert not is_incomplete(out)


def test_more_folds_than_training_micrographs_fail_before_training(sim_data: SimData, tmp_path: Path,
                                                                   run_cli):
    out = tmp_path / "model"
    rc, _, err = run_cli(*_train_argv(sim_data, out, _crossfit_config(tmp_path, 5)))
    assert rc != 0
    assert "calibration_folds = 5 needs at least 4 training micrographs" in error_line(err, "train")
    assert not list(out.glob("fold_*"))


def test_pick_uses_the_fold_networks_as_an_ensemble_unless_told_not_to(crossfit_run, sim_data: SimData,
                                                                        tmp_path: Path, run_cli):
    from cryounet.io.model_folder import picking_members, picking_threshold

    out, _ = crossfit_run
    members = picking_members([out], True)
    assert members == [out, out / "fold_1", out / "fold_2"]
    assert picking_members([out], False) == [out]
    mic = sim_data.micrographs[0]
    rc, _, err = run_cli("pick", "--model", out, "--micrographs", mic, "--output", tmp_path / "ens",
                         "--device", "cpu")
    assert rc == 0, err
    assert "an ensemble of 3 networks" in err
    ensemble = picking_threshold([read_model_info(m) for m in members], tta=True)
    assert f"at threshold {ensemble:.3f}" in err
    rc, _, err = run_cli("pick", "--model", out, "--micrographs", mic, "--output", tmp_path / "main",
                         "--device", "cpu", "--no-folds")
    assert rc == 0, err
    assert "ensemble" not in err
    assert f"at threshold {read_model_info(out).threshold_tta:.3f}" in err


def test_an_unusable_fold_is_left_out_with_a_warning(crossfit_run, tmp_path: Path, caplog):
    import shutil

    from cryounet.io.model_folder import picking_members

    copy = tmp_path / "model"
    shutil.copytree(crossfit_run[0], copy)
    (copy / "fold_2" / "model.safetensors").write_bytes(b"broken")
    with caplog.at_level("WARNING"):
        assert picking_members([copy], True) == [copy, copy / "fold_1"]
    assert "fold_2: calibration fold model left out" in caplog.text


def test_config_refuses_an_unknown_fold_epochs():
    with pytest.raises(CryoUNetError, match="train.fold_epochs = 'best' is not one of own, main"):
        CryoUNetConfig().updated({"train": {"fold_epochs": "best"}}).validate("test")


def _kept_epoch(history: list[dict]) -> int:
    """The epoch (1-based) that selection by best validation F1 keeps: the first strict improvement."""
    best, kept = -1.0, 0
    for record in history:
        if record["valid_best_f1"] > best + 1e-4:
            best, kept = record["valid_best_f1"], record["epoch"]
    return kept


@pytest.fixture(scope="module")
def crossfit_main_run(sim_data: SimData, tmp_path_factory: pytest.TempPathFactory):
    """A 3-fold cross-fitted training whose fold models train the main model's epoch count."""
    from conftest import _cli

    tmp = tmp_path_factory.mktemp("crossfit-main")
    out = tmp / "model"
    config = _crossfit_config(tmp, 3, "main")
    assert _cli(_train_argv(sim_data, out, config)) == 0
    return out, config


def test_fold_epochs_main_trains_each_fold_for_the_main_models_best_epoch_count(crossfit_main_run):
    out, _ = crossfit_main_run
    main_history = json.loads((out / "history.json").read_text())
    epochs = _kept_epoch(main_history)
    assert json.loads((out / "main_epochs.json").read_text()) == {"main_best_epoch": epochs}
    for j in (1, 2):
        fold_history = json.loads((out / f"fold_{j}" / "history.json").read_text())
        # Exactly that many epochs, whatever its own validation said, on the main model's schedule.
        assert [r["epoch"] for r in fold_history] == list(range(1, epochs + 1))
        assert [r["learning_rate"] for r in fold_history] == [r["learning_rate"] for r in main_history[:epochs]]
        assert not is_incomplete(out / f"fold_{j}")
    info = read_model_info(out)
    assert info.calibration["folds"] == 3 and info.calibration["micrographs"] == 4
    assert not is_incomplete(out)


def test_fold_epochs_main_resumes_with_the_folds_keeping_the_main_model(crossfit_main_run, sim_data: SimData,
                                                                       tmp_path: Path, run_cli):
    reference, config = crossfit_main_run
    # As if killed during fold 2: the main model and fold 1 finished, fold 2 did not.
    out = _interrupted_copy(reference, tmp_path)
    main_weights = (out / "model.safetensors").read_bytes()
    rc, _, err = run_cli(*[a for a in _train_argv(sim_data, out, config) if a != "--quiet"], "--resume")
    assert rc == 0, err
    assert "main model: kept from the interrupted run" in err
    assert "calibration fold 1/2: kept" in err and "calibration fold 2/2: training" in err
    assert (out / "model.safetensors").read_bytes() == main_weights
    resumed, first = read_model_info(out), read_model_info(reference)
    assert resumed.threshold == pytest.approx(first.threshold)
    # The validation-only thresholds survive a second calibration of the same model.
    assert resumed.calibration == pytest.approx(first.calibration)
    assert not is_incomplete(out)


def test_a_damaged_main_epoch_record_is_refused_on_resume(crossfit_main_run, sim_data: SimData,
                                                          tmp_path: Path, run_cli):
    reference, config = crossfit_main_run
    out = _interrupted_copy(reference, tmp_path)
    (out / "main_epochs.json").write_text(json.dumps({"main_best_epoch": 0}))
    rc, _, err = run_cli(*_train_argv(sim_data, out, config), "--resume")
    assert rc != 0
    assert "main_epochs.json: main_best_epoch must be a positive integer, got 0" in error_line(err, "train")
