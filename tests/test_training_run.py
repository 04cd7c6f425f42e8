"""A training run as the command asks for it (cryounet.training.run): the automatic start."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from cryounet.config import CryoUNetConfig
from cryounet.io.datasets import datasets_from_options
from cryounet.io.model_folder import GENERAL_MODEL, read_model_info
from cryounet.training.run import TrainRequest, start_weights

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
