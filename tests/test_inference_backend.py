"""Choosing the picker (cryounet.inference.backend): device, settings once, backend, diameter."""
from __future__ import annotations

import shutil
from pathlib import Path

from cryounet.inference.backend import PickRequest, make_picker
from cryounet.inference.onnx_picker import OnnxPicker
from cryounet.inference.picker import Picker
from cryounet.io.model_folder import ONNX_NAME, read_model_info


def test_the_diameter_is_the_pickers_not_the_models(tiny_model: Path) -> None:
    own = read_model_info(tiny_model).diameter_px
    chosen = make_picker(PickRequest([tiny_model], "cpu", 1, diameter=own * 2))
    assert isinstance(chosen.picker, OnnxPicker) and chosen.members == [tiny_model]
    assert chosen.picker.diameter == own * 2
    assert all(m.info.diameter_px == own for m in chosen.picker.models)
    assert make_picker(PickRequest([tiny_model], "cpu", 1)).picker.diameter == own


def test_pytorch_picks_without_a_graph_with_the_same_settings(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / ONNX_NAME).unlink()
    options = {"batch_size": 3, "tta": False, "precision": None, "workers": None, "folds": None, "backend": None}
    onnx = make_picker(PickRequest([tiny_model], "cpu", 1, options=options)).picker
    torch_picker = make_picker(PickRequest([folder], "cpu", 1, options=options, diameter=25.0)).picker
    assert isinstance(torch_picker, Picker) and torch_picker.diameter == 25.0
    assert onnx.pick == torch_picker.pick  # one composition of the settings, whichever backend
    assert onnx.pick.batch_size == 3 and onnx.pick.tta is False


def test_onnxruntime_asked_for_in_the_config_is_refused_on_a_gpu(tiny_model: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    import json

    import pytest

    from cryounet.errors import CryoUNetError
    from cryounet.inference import backend

    config = tmp_path / "pick.json"
    config.write_text(json.dumps({"pick": {"backend": "onnxruntime"}}))
    monkeypatch.setattr(backend, "cuda_impossible", lambda: False)
    monkeypatch.setattr(backend, "_torch_device", lambda request: "cuda:0")  # a GPU, as torch would find it
    monkeypatch.setattr(backend, "_gpu_settings", lambda device: {})
    with pytest.raises(CryoUNetError, match="ONNX Runtime picks on the CPU only, and the device is cuda:0"):
        make_picker(PickRequest([tiny_model], "auto", 1, config=config))
