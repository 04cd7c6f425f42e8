"""Configuration dataclasses and their JSON form (cryounet.config)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryounet.config import CryoUNetConfig, load_config
from cryounet.errors import CryoUNetError


def test_defaults_and_dict_round_trip() -> None:
    cfg = CryoUNetConfig()
    data = cfg.to_dict()
    assert set(data) == {"preprocess", "target", "model", "loss", "augment", "train", "pick", "refine"}
    assert data["model"]["architecture"] == "unet"
    assert CryoUNetConfig.from_dict(data) == cfg
    # JSON round trip too (the form stored in model folders).
    assert CryoUNetConfig.from_dict(json.loads(json.dumps(data))) == cfg


def test_subset_overrides_only_given_keys() -> None:
    cfg = CryoUNetConfig().updated({"train": {"epochs": 3}, "model": {"depth": 2}})
    assert cfg.train.epochs == 3 and cfg.model.depth == 2
    assert cfg.train.batch_size == CryoUNetConfig().train.batch_size
    assert cfg.model.base_channels == CryoUNetConfig().model.base_channels
    # updated() returns a copy and leaves the original alone.
    base = CryoUNetConfig()
    base.updated({"train": {"epochs": 1}})
    assert base.train.epochs == CryoUNetConfig().train.epochs != 1


@pytest.mark.parametrize("data, named", [
    ({"trian": {}}, "trian"),
    ({"train": {"epochz": 3}}, "epochz"),
    ({"pick": {"threshold": 0.5, "nms": 1}}, "nms"),
])
def test_unknown_keys_named(data: dict, named: str) -> None:
    with pytest.raises(CryoUNetError, match=f"unknown key\\(s\\) {named}"):
        CryoUNetConfig().updated(data, source="my.json")


@pytest.mark.parametrize("data, where", [
    ({"train": {"epochs": "3"}}, "train.epochs: expected an integer"),
    ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer"),
    ({"train": {"epochs": True}}, "train.epochs: expected an integer"),
    ({"train": {"epochs": None}}, "train.epochs: expected an integer, got None"),
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate: expected a number"),
    ({"pick": {"tta": 1}}, "pick.tta: expected true/false"),
    ({"model": {"architecture": 3}}, "model.architecture: expected a string"),
    ({"train": 3}, "train: expected an object"),
])
def test_type_errors_name_the_key(data: dict, where: str) -> None:
    with pytest.raises(CryoUNetError, match=where):
        CryoUNetConfig().updated(data)


def test_coercions() -> None:
    cfg = CryoUNetConfig().updated({"train": {"epochs": 3.0, "learning_rate": 1},
                                    "pick": {"threshold": None}})
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.pick.threshold is None
    cfg = CryoUNetConfig().updated({"pick": {"threshold": 0.25}})
    assert cfg.pick.threshold == 0.25


def test_from_dict_refuses_non_object() -> None:
    with pytest.raises(CryoUNetError, match="expected an object, got list"):
        CryoUNetConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_load_config(tmp_path: Path) -> None:
    assert load_config(None) == CryoUNetConfig()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"epochs": 5}, "loss": {"name": "focal"}}))
    cfg = load_config(path)
    assert cfg.train.epochs == 5 and cfg.loss.name == "focal"
    base = CryoUNetConfig().updated({"model": {"depth": 2}, "train": {"epochs": 9}})
    cfg = load_config(path, base=base)
    assert cfg.model.depth == 2 and cfg.train.epochs == 5


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CryoUNetError, match="missing.json: config file does not exist"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{'train': }")
    with pytest.raises(CryoUNetError, match="bad.json: not valid JSON"):
        load_config(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"train": {"epoch": 1}}')
    with pytest.raises(CryoUNetError, match=r"unknown.json\.train: unknown key\(s\) epoch"):
        load_config(unknown)


def test_load_config_refuses_non_object_json(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(CryoUNetError, match="list.json"):
        load_config(path)
