"""The CUDA paths: device choice, picking (float32, bfloat16, float16) and training on a GPU.

Skipped where torch sees no CUDA GPU, as in CI; they run on a GPU machine (``bench/gpu.py`` runs
them first; docs/history: "GPU" records where and when they last passed). Data-parallel training
over several GPUs needs more than one and is not covered here.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_helpers import loaded_model

from cryounet.config import ModelConfig, PickConfig
from cryounet.device import resolve_device
from cryounet.inference.picker import Picker
from cryounet.inference.predict import predict_probability
from cryounet.io.coordinates import read_coordinates
from cryounet.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_model(ModelConfig(base_channels=8, depth=3))
    with torch.no_grad():  # batch-norm statistics away from the identity, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _image(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_auto_and_cuda_choose_the_gpu_and_log_its_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cryounet"):
        assert resolve_device("auto") == torch.device("cuda", 0)
        assert resolve_device("cuda") == torch.device("cuda", 0)
        assert resolve_device("0") == torch.device("cuda", 0)
    assert f"using device cuda:0 ({torch.cuda.get_device_name(0)})" in caplog.text


@pytest.mark.parametrize("shape, tile", [((200, 176), 1152), ((320, 288), 128)])
@pytest.mark.parametrize("tta", [False, True])
def test_gpu_probabilities_are_the_cpu_ones(shape: tuple[int, int], tile: int, tta: bool) -> None:
    """One pass and tiled, with and without test-time augmentation: the GPU gives the CPU's map
    (TF32 convolutions round the logits a little on recent GPUs)."""
    net = _network()
    image = _image(shape)
    cpu = predict_probability(net, image, tile_size=tile, overlap=32, tta=tta, device="cpu")
    gpu = predict_probability(copy.deepcopy(net).cuda(), image, tile_size=tile, overlap=32, tta=tta,
                              device="cuda")
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    assert np.abs(gpu - cpu).max() < 5e-3


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_on_the_gpu(precision: str) -> None:
    net = _network(seed=2)
    image = _image((256, 256), seed=3)
    reference = Picker([loaded_model(copy.deepcopy(net).cuda())], PickConfig(tta=True), "cuda").probability(image)[0]
    picker = Picker([loaded_model(copy.deepcopy(net).cuda())], PickConfig(tta=True, precision=precision), "cuda")
    prob = picker.probability(image)[0]
    assert prob.dtype == np.float32 and np.isfinite(prob).all()
    assert np.abs(prob - reference).max() < 0.03
    assert np.abs(prob - reference).max() > 0  # the forward pass did run in the lower precision


def _matched(a: np.ndarray, b: np.ndarray, radius: float) -> int:
    """How many points of ``a`` have a point of ``b`` within ``radius``."""
    if not len(a) or not len(b):
        return 0
    distance = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    return int((distance.min(axis=1) <= radius).sum())


def test_train_and_pick_on_the_gpu(run_cli, sim_data, tiny_config_file: Path, tmp_path: Path) -> None:
    """``cryounet train`` and ``cryounet pick`` with ``--device cuda``: the model is written like a
    CPU-trained one (it loads anywhere) and the GPU's picks are the CPU's."""
    model = tmp_path / "model"
    rc, _, err = run_cli("train", "--micrographs", sim_data.folder, "--coordinates", sim_data.folder,
                         "--diameter", sim_data.diameter, "--output", model, "--config", tiny_config_file,
                         "--device", "cuda")
    assert rc == 0, err
    assert "using device cuda:0" in err
    picks = {}
    for device, workers in (("cuda", "2"), ("cpu", "0")):
        out = tmp_path / f"picks-{device}"
        rc, _, err = run_cli("pick", "--model", model, "--micrographs", sim_data.folder, "--output", out,
                             "--device", device, "--workers", workers, "--threshold", "0.3")
        assert rc == 0, err
        assert f"using device {device}" in err
        picks[device] = {m.stem: read_coordinates(out / f"{m.stem}.star").xy for m in sim_data.micrographs}
    total = sum(len(xy) for xy in picks["cpu"].values())
    assert total > 0
    matched = sum(_matched(picks["cuda"][stem], xy, 1.0) for stem, xy in picks["cpu"].items())
    assert matched >= 0.95 * total
    assert abs(sum(len(xy) for xy in picks["cuda"].values()) - total) <= max(1, total // 20)
