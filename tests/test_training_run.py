"""A training run as the command asks for it (cryounet.training.run): the automatic start."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from cryounet.config import CryoUNetConfig
from cryounet.io.datasets import datasets_from_options
from cryounet.io.model_folder import GENERAL_MODEL, read_model_info
from cryounet.training.run import TrainRequest, load_datasets, start_weights

from engine_helpers import SimData


def _request(folder: Path, init) -> TrainRequest:
    return TrainRequest(datasets_from_options([str(folder)], folder, 20.0), folder / "model", init=init)


def test_automatic_start_is_the_general_model_below_two_labelled_micrographs(
        sim_data: SimData, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "data"
    shutil.copytree(sim_data.folder, folder)
    cfg = CryoUNetConfig()
    assert start_weights(_request(folder, "auto"), cfg) is None  # four labelled: random weights
    for star in sorted(folder.glob("*.star"))[1:]:
        star.unlink()
    cfg.model.base_channels = 4  # the general model's architecture replaces the configured one
    with caplog.at_level(logging.INFO, logger="cryounet"):
        assert start_weights(_request(folder, "auto"), cfg) == GENERAL_MODEL
    assert "1 labelled micrograph(s), so training starts from the general model" in caplog.text
    assert cfg.model == read_model_info(GENERAL_MODEL).config.model


def test_a_named_start_is_used_whatever_the_count(sim_data: SimData, tmp_path: Path) -> None:
    assert start_weights(_request(sim_data.folder, "general"), CryoUNetConfig()) == GENERAL_MODEL
    assert start_weights(_request(sim_data.folder, None), CryoUNetConfig()) is None


def test_a_training_only_dataset_is_never_held_out(sim_data: SimData, tmp_path: Path) -> None:
    from cryounet.simulate import SimulationConfig, simulate_dataset

    negatives = tmp_path / "negatives"
    simulate_dataset(SimulationConfig(n_micrographs=3, size=sim_data.size, diameter_px=sim_data.diameter,
                                      particles_per_micrograph=0, contamination_range=(1, 2), seed=9), negatives)
    datasets = [{"micrographs": [str(sim_data.folder)], "coordinates": sim_data.folder, "diameter": 20.0},
                {"micrographs": [str(negatives)], "coordinates": negatives, "diameter": 20.0, "validate": False}]
    train, valid, train_only = load_datasets(datasets, CryoUNetConfig())
    assert sorted(i.name for i in train_only) == ["mic_000", "mic_001", "mic_002"]
    assert all(len(i.xy) == 0 for i in train_only)
    real = {p.stem for p in sim_data.micrographs}
    assert {i.name for i in train} | {i.name for i in valid} == real and valid
    assert len(train) + len(valid) == len(real)  # the training-only micrographs are in neither
    # The dataset each micrograph is drawn from (train.dataset_balance): the first dataset is group
    # 0, the training-only ones share group -1.
    assert {i.group for i in train} == {0} and {i.group for i in train_only} == {-1}
