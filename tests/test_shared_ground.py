"""The engine's torch-free ground: what the Scipion plugin shares with the engine imports no torch.

``cryounet.config``, ``cryounet.errors`` and ``cryounet.io`` hold the rules both halves need (file
names, suffixes, the MRC header check, the threshold and box rules, the choice lists); the plugin
reaches them through ``cryounet_plugin.engine`` and must be able to do so without torch.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cryounet import config
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import box_size_for_diameter, diameter_for_box_size, list_coordinate_files
from cryounet.io.model_folder import format_threshold, parse_threshold
from engine_helpers import REPO

GROUND = ("cryounet.config", "cryounet.device_probe", "cryounet.errors", "cryounet.io.atomic",
          "cryounet.io.coordinates", "cryounet.io.micrographs", "cryounet.io.model_folder", "cryounet.io.mrc",
          "cryounet.io.picks_folder", "cryounet.render", "cryounet.analysis.diameter",
          "cryounet.analysis.image_size", "cryounet.analysis.diameter_inputs")

_PROBE = r"""
import importlib, json, sys
sys.modules["torch"] = None  # any "import torch" now raises ImportError
failed = {}
for name in %r:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(json.dumps({"failed": failed, "torch": [m for m in sys.modules if m.split(".")[0] == "torch"
                                             and sys.modules[m] is not None],
                  "matplotlib": "matplotlib" in sys.modules}))
"""


def test_shared_ground_imports_with_torch_unimportable() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE % (GROUND,)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"failed": {}, "torch": [], "matplotlib": False}  # matplotlib only when drawing


def test_the_probe_sees_a_torch_import() -> None:
    """The probe is not blind: a module that needs torch fails under it."""
    proc = subprocess.run([sys.executable, "-c", _PROBE % (("cryounet.models.weights",),)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(result["failed"]) == ["cryounet.models.weights"]


def test_choice_lists_are_what_the_engine_implements() -> None:
    from cryounet.models.registry import ARCHITECTURES
    from cryounet.training.augment import PRESETS
    from cryounet.training.losses import build_loss

    assert tuple(ARCHITECTURES) == config.ARCHITECTURES
    assert PRESETS == config.AUGMENT_PRESETS
    for name in config.LOSSES:
        build_loss(config.LossConfig(name=name))
    with pytest.raises(CryoUNetError, match="model.architecture = 'vit' is not one of unet"):
        config.CryoUNetConfig.from_dict({"model": {"architecture": "vit"}})


def test_box_rule_round_trips_a_diameter() -> None:
    assert box_size_for_diameter(24) == 36 and box_size_for_diameter(25) == 38
    for diameter in (8, 24, 60, 108, 300):
        assert abs(diameter_for_box_size(box_size_for_diameter(diameter)) - diameter) < 4 / 3


def test_threshold_text() -> None:
    assert parse_threshold("auto") is None and parse_threshold(" AUTO ") is None
    assert parse_threshold("0.25") == 0.25 and format_threshold(None) == "auto"
    assert parse_threshold(format_threshold(0.125)) == 0.125
    for bad in ("nan", "1.5", "-0.1", "high"):
        with pytest.raises(CryoUNetError, match="--threshold"):
            parse_threshold(bad)


def test_list_coordinate_files(tmp_path) -> None:
    for name in ("a.star", "b.star", "coordinates.star", "notes.md", "c.box"):
        (tmp_path / name).write_text("")
    assert sorted(list_coordinate_files(tmp_path)) == ["a", "b", "c"]
    assert sorted(list_coordinate_files(tmp_path, "*.star")) == ["a", "b"]
    (tmp_path / "a.csv").write_text("")
    with pytest.raises(CryoUNetError, match="several coordinate files for micrograph 'a'"):
        list_coordinate_files(tmp_path)
    with pytest.raises(CryoUNetError, match="does not exist"):
        list_coordinate_files(tmp_path / "nope")


def test_cuda_impossible_reads_the_nvidia_driver_file(tmp_path) -> None:
    from cryounet.device_probe import cuda_impossible

    driver = tmp_path / "version"
    assert cuda_impossible("linux", driver)
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module\n")
    assert not cuda_impossible("linux", driver)
    assert not cuda_impossible("darwin", tmp_path / "absent")  # unknown without torch: maybe
