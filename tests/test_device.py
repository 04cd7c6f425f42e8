"""Device resolution (cryounet.device): explicit, logged, never a silent CPU fallback."""
from __future__ import annotations

import logging

import pytest
import torch

from cryounet.config import PICK_MACHINE_SETTINGS, ModelConfig, PickConfig
from cryounet.device import machine_pick_settings, preferred_layout, resolve_device
from cryounet.errors import CryoUNetError
from cryounet.models import build_model


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu(spec: str, no_gpu, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cryounet"):
        assert resolve_device(spec) == torch.device("cpu")
    assert any("using device cpu" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("spec", [None, "auto", "AUTO"])
def test_auto_without_gpu_is_cpu_and_says_so(spec, no_gpu, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cryounet"):
        assert resolve_device(spec) == torch.device("cpu")
    assert any("no CUDA GPU found" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "0", "1", "0 1", "0,1", "CUDA:1"])
def test_gpu_requested_without_gpu_raises(spec: str, no_gpu) -> None:
    with pytest.raises(CryoUNetError, match="no CUDA GPU is available") as info:
        resolve_device(spec)
    assert spec.strip().lower() in str(info.value) and "--device cpu" in str(info.value)


@pytest.mark.parametrize("spec", ["gpu", "tpu", "cuda0", "-1", "mps", "cuda-0"])
def test_junk_raises(spec: str, no_gpu) -> None:
    with pytest.raises(CryoUNetError, match="unknown device"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["", " ", ","])
def test_blank_device_raises_user_error(spec: str, no_gpu) -> None:
    with pytest.raises(CryoUNetError):
        resolve_device(spec)


def test_gpu_index_beyond_count(one_gpu) -> None:
    with pytest.raises(CryoUNetError, match="GPU 3 was requested but only 1"):
        resolve_device("3")
    with pytest.raises(CryoUNetError, match="GPU 2 was requested"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec, index", [("cuda", 0), ("0", 0), ("cuda:0", 0), ("0 1", 0), ("auto", 0)])
def test_gpu_resolution_with_a_gpu(spec: str, index: int, one_gpu,
                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cryounet"):
        device = resolve_device(spec)
    assert device == torch.device("cuda", index)
    assert any("Fake GPU" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_real_torch_without_gpu() -> None:
    with pytest.raises(CryoUNetError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_preferred_layout_on_the_cpu_is_channels_last_with_the_same_values() -> None:
    torch.manual_seed(0)
    network = build_model(ModelConfig(base_channels=4, depth=2)).eval()
    x = torch.randn(2, 1, 48, 40)
    with torch.no_grad():
        before = network(x)
        assert preferred_layout(network, "cpu") is network
        after = network(x)
    weights = [p for p in network.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_preferred_layout_leaves_other_devices_alone() -> None:
    network = build_model(ModelConfig(base_channels=4, depth=2))
    preferred_layout(network, "meta")
    preferred_layout(network, "meta", inference=True)
    assert all(p.is_contiguous() for p in network.parameters())


def test_preferred_layout_on_a_gpu_is_channels_last_for_inference_only(monkeypatch) -> None:
    """Checked without a GPU: the layout asked of ``Module.to`` for each case."""
    network = build_model(ModelConfig(base_channels=4, depth=2))
    asked = []
    monkeypatch.setattr(network, "to", lambda **kwargs: asked.append(kwargs))
    preferred_layout(network, "cuda:0")
    assert asked == []  # training on a GPU: the default layout
    preferred_layout(network, "cuda:0", inference=True)
    preferred_layout(network, "cpu")
    assert asked == [{"memory_format": torch.channels_last}] * 2


class _Properties:
    def __init__(self, gib: float) -> None:
        self.total_memory = int(gib * 1024 ** 3)


@pytest.mark.parametrize("gib, tile", [(8, 1152), (15.9, 1152), (16, 2048), (141, 2048)])
def test_machine_pick_settings_on_a_gpu(monkeypatch, gib: float, tile: int) -> None:
    """More worker threads on a GPU; whole working images up to 2048 px when it has 16 GiB."""
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: _Properties(gib))
    settings = machine_pick_settings("cuda:0")
    assert settings == {"tile_size": tile, "batch_size": 1, "precision": "float32", "workers": 4,
                        "backend": "auto"}


def test_machine_pick_settings_on_the_cpu_are_pickconfigs() -> None:
    defaults = PickConfig()
    assert machine_pick_settings("cpu") == {"tile_size": defaults.tile_size, "batch_size": defaults.batch_size,
                                            "precision": defaults.precision, "workers": defaults.workers,
                                            "backend": defaults.backend}
    assert set(machine_pick_settings("cpu")) == set(PICK_MACHINE_SETTINGS)
