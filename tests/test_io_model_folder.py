"""Model folders (cryounet.io.model_folder, cryounet.models.weights): save/load round trip, refusals."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cryounet.config import CryoUNetConfig
from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.atomic import write_json
from cryounet.io.model_folder import (CONFIG_NAME, FORMAT_VERSION, MODEL_FORMAT, SHA256_KEY, WEIGHTS_NAME, ModelInfo,
                                      check_model_folder, file_digest, general_model_path, is_general, read_json_list,
                                      read_model_info, record_digests, resolve_model, weights_digest)
from cryounet.models.weights import load_model, load_weights, save_model
from cryounet.models import build_model

CFG = CryoUNetConfig().updated({
    "model": {"base_channels": 4, "depth": 2, "architecture": "attention_unet"},
    "train": {"epochs": 7}, "pick": {"threshold": 0.3}})


def _saved(folder: Path) -> tuple[torch.nn.Module, ModelInfo]:
    torch.manual_seed(0)
    net = build_model(CFG.model)
    with torch.no_grad():  # non-default batch-norm statistics must survive too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
    info = ModelInfo(CFG, diameter_px=56.0, threshold=0.42, validation={"f1": 0.8, "ap": 0.7})
    save_model(folder, net, info)
    return net, info


def test_round_trip(tmp_path: Path) -> None:
    net, info = _saved(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = load_model(tmp_path / "model")
    assert loaded.info == info and loaded.path == tmp_path / "model"
    assert loaded.info.config.train.epochs == 7 and loaded.info.config.pick.threshold == 0.3
    assert not loaded.network.training  # ready for inference
    x = torch.randn(2, 1, 36, 28)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), loaded.network(x))
    data = json.loads((tmp_path / "model" / CONFIG_NAME).read_text())
    assert data["format"] == MODEL_FORMAT and data["format_version"] == FORMAT_VERSION
    assert data["diameter_px"] == 56.0 and data["threshold"] == 0.42
    assert "cryounet_version" in data


def test_models_written_before_separation_read_as_off(tmp_path: Path) -> None:
    """A model written before ``target.separation`` was trained without borders: a missing key
    reads as ``off`` (a refinement of it trains as it was trained), not as today's ``auto``."""
    _saved(tmp_path / "m")
    data = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    assert data["config"]["target"]["separation"] == "auto"  # as given to save_model
    del data["config"]["target"]["separation"]
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    assert read_model_info(tmp_path / "m").config.target.separation == "off"
    data["config"]["target"]["separation"] = "on"
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    assert read_model_info(tmp_path / "m").config.target.separation == "on"
    data["config"]["target"] = []
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(CryoUNetError, match="target: expected an object"):
        read_model_info(tmp_path / "m")


def test_models_written_before_tta_symmetries_read_as_eight(tmp_path: Path) -> None:
    """The TTA threshold of a model written before ``pick.tta_symmetries`` was calibrated over all
    eight symmetries: a missing key reads as 8, not as today's default (4); a stored one is kept."""
    _saved(tmp_path / "m")
    data = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    assert data["config"]["pick"]["tta_symmetries"] == 4  # written by today's CryoUNet
    del data["config"]["pick"]["tta_symmetries"]
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    assert read_model_info(tmp_path / "m").config.pick.tta_symmetries == 8
    assert read_model_info(tmp_path / "m").config.pick.threshold == 0.3  # the rest as stored
    data["config"]["pick"]["tta_symmetries"] = 8
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    assert read_model_info(tmp_path / "m").config.pick.tta_symmetries == 8
    data["config"]["pick"]["tta_symmetries"] = 3
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(CryoUNetError, match="pick.tta_symmetries must be one of 4, 8"):
        read_model_info(tmp_path / "m")


def test_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="model folder does not exist"):
        load_model(tmp_path / "nope")


def test_non_model_folder(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("hello")
    with pytest.raises(InputFileError, match="not a CryoUNet model folder") as info:
        load_model(tmp_path / "stuff")
    assert CONFIG_NAME in str(info.value)


def _edit_config(folder: Path, **changes) -> None:
    path = folder / CONFIG_NAME
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("changes, message", [
    ({"format": "other-tool"}, "not a CryoUNet model config"),
    ({"format_version": FORMAT_VERSION + 1}, "newer than this CryoUNet"),
    ({"threshold": "high"}, "model config is incomplete"),
    ({"diameter_px": None}, "model config is incomplete"),
    ({"config": {"train": {"epochz": 3}}}, "unknown key"),
])
def test_wrong_format_refused(tmp_path: Path, changes: dict, message: str) -> None:
    _saved(tmp_path / "m")
    _edit_config(tmp_path / "m", **changes)
    with pytest.raises(CryoUNetError, match=message) as info:
        load_model(tmp_path / "m")
    assert str(tmp_path / "m" / CONFIG_NAME) in str(info.value)


def test_missing_key_and_invalid_json(tmp_path: Path) -> None:
    _saved(tmp_path / "m")
    data = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    del data["diameter_px"]
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(InputFileError, match="incomplete.*diameter_px"):
        read_model_info(tmp_path / "m")
    (tmp_path / "m" / CONFIG_NAME).write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        read_model_info(tmp_path / "m")
    (tmp_path / "m" / CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(InputFileError, match="not a CryoUNet model config"):
        read_model_info(tmp_path / "m")


def test_non_numeric_format_version_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "m")
    _edit_config(tmp_path / "m", format_version="x")
    with pytest.raises(InputFileError, match="config.json"):
        read_model_info(tmp_path / "m")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not safetensors" * 10,
                                     b"\xff" * 8 + b"{}"], ids=["empty", "text", "bad-header"])
def test_corrupt_weights_refused(tmp_path: Path, content: bytes) -> None:
    _saved(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_NAME).write_bytes(content)
    with pytest.raises(InputFileError, match="not a readable safetensors file") as info:
        load_model(tmp_path / "m")
    assert WEIGHTS_NAME in str(info.value)


def test_truncated_weights_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "m")
    path = tmp_path / "m" / WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputFileError, match=WEIGHTS_NAME):
        load_model(tmp_path / "m")


def test_missing_weights_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_NAME).unlink()
    with pytest.raises(InputFileError, match="model weights are missing"):
        load_model(tmp_path / "m")


def test_weights_of_another_architecture_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "m")
    other = tmp_path / "other"
    save_model(other, build_model(CryoUNetConfig().updated(
        {"model": {"base_channels": 8, "depth": 2}}).model), ModelInfo(CFG, 56.0, 0.5))
    shutil.copy(other / WEIGHTS_NAME, tmp_path / "m" / WEIGHTS_NAME)
    with pytest.raises(InputFileError, match="do not match the architecture"):
        load_model(tmp_path / "m")
    net = build_model(CFG.model)
    with pytest.raises(InputFileError, match="do not match"):
        load_weights(net, other / WEIGHTS_NAME)


def test_json_helpers(tmp_path: Path) -> None:
    assert read_json_list(tmp_path / "missing.json") == []
    write_json(tmp_path / "h.json", [{"epoch": 1}])
    assert read_json_list(tmp_path / "h.json") == [{"epoch": 1}]
    assert (tmp_path / "h.json").read_text().endswith("\n")
    write_json(tmp_path / "d.json", {"a": 1})
    with pytest.raises(CryoUNetError, match="should be a JSON list of records"):
        read_json_list(tmp_path / "d.json")


def test_trained_model_folder_loads(tiny_model: Path) -> None:
    model = load_model(tiny_model)
    assert model.info.diameter_px == 24.0
    assert model.info.config.model.base_channels == 4 and model.info.config.model.depth == 2
    assert 0.0 <= model.info.threshold <= 1.0
    assert set(model.info.validation) >= {"precision", "recall", "f1", "ap"}


def test_model_folder_readers_and_checks(tmp_path: Path, tiny_model: Path) -> None:
    from cryounet.io.model_folder import (check_model_folder, read_history, read_refine_history,
                                          read_validation_curve)

    assert check_model_folder(tiny_model) == []
    info = read_model_info(tiny_model)
    assert info.cryounet_version and info.architecture == "unet" and info.source == str(tiny_model)
    assert read_history(tiny_model) and read_refine_history(tiny_model) == []
    assert set(read_validation_curve(tiny_model)) >= {"thresholds", "precision", "recall"}
    assert check_model_folder(tmp_path / "none") == [f"model folder {tmp_path / 'none'} does not exist"]
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model, bad)
    data = json.loads((bad / CONFIG_NAME).read_text())
    for key, value, message in (("threshold", 1.5, "threshold must be a probability"),
                                ("threshold_tta", float("nan"), "threshold_tta must be a probability"),
                                ("diameter_px", 0, "diameter_px must be a positive number")):
        (bad / CONFIG_NAME).write_text(json.dumps(dict(data, **{key: value})))
        assert message in check_model_folder(bad)[0]
    (bad / CONFIG_NAME).write_text(json.dumps(data))
    (bad / "history.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="history.json: training history should be a JSON list of records"):
        read_history(bad)


def test_list_model_folders_keeps_only_usable_models(tmp_path: Path) -> None:
    """A site's model library: finished model folders are listed by name, sorted; an unfinished
    copy, a folder without weights, a stray file and an absent library are not."""
    from cryounet.io.model_folder import check_model_folder, list_model_folders
    library = tmp_path / "models"
    _saved(library / "ribosome_2A")
    _saved(library / "apoferritin")
    (library / "empty").mkdir()
    _saved(library / "broken")
    (library / "broken" / WEIGHTS_NAME).write_bytes(b"not safetensors")
    _saved(library / "truncated")
    weights = (library / "truncated" / WEIGHTS_NAME).read_bytes()
    (library / "truncated" / WEIGHTS_NAME).write_bytes(weights[:-100])
    (library / "notes.txt").write_text("not a model")
    assert list_model_folders(library) == ["apoferritin", "ribosome_2A"]
    problems = check_model_folder(library / "truncated")
    assert len(problems) == 1 and "is incomplete or damaged" in problems[0] and WEIGHTS_NAME in problems[0]
    assert list_model_folders(tmp_path / "absent") == []


def test_weights_hash_is_recorded_and_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """save_model records the weights' SHA-256; weights with other bytes are refused (by load_model
    and check_model_folder), and a config.json without the record warns instead of checking."""
    _saved(tmp_path / "m")
    folder = tmp_path / "m"
    assert read_model_info(folder).sha256 == {WEIGHTS_NAME: file_digest(folder / WEIGHTS_NAME)}
    assert json.loads((folder / CONFIG_NAME).read_text())[SHA256_KEY][WEIGHTS_NAME] == weights_digest(folder)
    other = tmp_path / "other"
    net = build_model(CFG.model)
    save_model(other, net, ModelInfo(CFG, 56.0, 0.5))  # same network, other values: loads, but other bytes
    shutil.copy(other / WEIGHTS_NAME, folder / WEIGHTS_NAME)
    with pytest.raises(InputFileError, match="does not match the SHA-256 recorded"):
        load_model(folder)
    assert "does not match the SHA-256" in check_model_folder(folder)[0]
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config[SHA256_KEY]
    write_json(folder / CONFIG_NAME, config)
    with caplog.at_level("WARNING", logger="cryounet"):
        load_model(folder)
    assert "records no SHA-256 of model.safetensors" in caplog.text and "cryounet export --model" in caplog.text
    assert check_model_folder(folder) == []
    record_digests(folder, [WEIGHTS_NAME])
    assert read_model_info(folder).sha256 == {WEIGHTS_NAME: weights_digest(folder)}
    assert json.loads((folder / CONFIG_NAME).read_text())["threshold"] == 0.42  # the rest kept


@pytest.mark.parametrize("record", [["x"], {"model.safetensors": "abc"}, {"notes.txt": "0" * 64}])
def test_malformed_hash_record_refused(tmp_path: Path, record: object) -> None:
    _saved(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    config[SHA256_KEY] = record
    write_json(tmp_path / "m" / CONFIG_NAME, config)
    with pytest.raises(InputFileError, match=f"config.json.*'{SHA256_KEY}'"):
        read_model_info(tmp_path / "m")


def test_general_resolves_to_the_shipped_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model("general") == general_model_path()
    assert is_general("general") and is_general(general_model_path())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "general").mkdir()
    assert resolve_model("./general") == Path("general")  # a folder of that name, given as a path
    assert not is_general(tmp_path / "general") and not is_general(Path("general"))
    assert resolve_model(tmp_path / "m") == tmp_path / "m"


def test_shipped_general_model_records_and_matches_its_files() -> None:
    from cryounet.io.model_folder import ONNX_NAME

    folder = general_model_path()
    info = read_model_info(folder)
    assert check_model_folder(folder) == []
    assert (folder / ONNX_NAME).is_file()
    assert info.sha256 == {WEIGHTS_NAME: weights_digest(folder), ONNX_NAME: file_digest(folder / ONNX_NAME)}
