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


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("section, key, allowed", [
    ("preprocess", "normalisation", "robust, standard"),
    ("target", "shape", "disk, gaussian"),
    ("model", "norm", "batch, group"),
    ("loss", "name", "bce, focal, dice, bce_dice, focal_dice"),
    ("augment", "preset", "none, light, strong"),
    ("train", "schedule", "cosine, constant"),
    ("train", "selection", "best, last"),
])
def test_unknown_choice_names_the_key(section: str, key: str, allowed: str) -> None:
    with pytest.raises(CryoUNetError) as info:
        CryoUNetConfig().updated({section: {key: "bogus"}}, source="my.json")
    assert str(info.value) == f"my.json: {section}.{key} = 'bogus' is not one of {allowed}"


@pytest.mark.parametrize("section, key, allowed", [
    ("preprocess", "normalisation", ["robust", "standard"]),
    ("target", "shape", ["disk", "gaussian"]),
    ("target", "separation", ["auto", "on", "off"]),
    ("model", "norm", ["batch", "group"]),
    ("loss", "name", ["bce", "focal", "dice", "bce_dice", "focal_dice"]),
    ("augment", "preset", ["none", "light", "strong"]),
    ("train", "schedule", ["cosine", "constant"]),
    ("train", "selection", ["best", "last"]),
])
def test_every_documented_choice_is_accepted(section: str, key: str, allowed: list) -> None:
    for value in allowed:
        assert getattr(getattr(CryoUNetConfig().updated({section: {key: value}}), section), key) == value


POSITIVE = ["preprocess.working_diameter", "target.positive_radius", "model.base_channels",
            "model.depth", "model.blocks_per_level", "train.epochs", "train.steps_per_epoch",
            "train.batch_size", "train.patch_size", "pick.tile_size", "pick.batch_size",
            "pick.min_score", "refine.rounds", "refine.epochs_per_round",
            "refine.checkpoint_ensemble"]


def _set(dotted: str, value) -> dict:
    section, key = dotted.split(".")
    data = {section: {key: value}}
    if dotted == "target.positive_radius":  # keep ignore_radius >= positive_radius
        data[section]["ignore_radius"] = max(value, 0.4)
    if dotted == "pick.tile_size":  # keep tile_overlap < tile_size
        data[section]["tile_overlap"] = 0
    return data


@pytest.mark.parametrize("dotted", POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_positive_values(dotted: str, value: int) -> None:
    with pytest.raises(CryoUNetError, match=f"{dotted.replace('.', '[.]')} must be positive, got {value}"):
        CryoUNetConfig().updated(_set(dotted, value))
    CryoUNetConfig().updated(_set(dotted, 1))  # the smallest integer is fine


FRACTIONS = ["target.unlabelled_weight", "model.dropout", "train.positive_fraction",
             "train.hard_negative_fraction", "train.calibration_tolerance", "pick.component_level"]


@pytest.mark.parametrize("dotted", FRACTIONS)
def test_fractions_between_0_and_1(dotted: str) -> None:
    for bad in (-0.01, 1.01):
        with pytest.raises(CryoUNetError, match=f"{dotted.replace('.', '[.]')} must be between 0 and 1"):
            CryoUNetConfig().updated(_set(dotted, bad))
    extra = {"train": {"positive_fraction": 0.0}} if dotted == "train.hard_negative_fraction" else {}
    for good in (0.0, 1.0):
        CryoUNetConfig().updated(extra).updated(_set(dotted, good))


def test_positive_plus_hard_negative_fraction_at_most_1() -> None:
    ok = CryoUNetConfig().updated({"train": {"positive_fraction": 0.5, "hard_negative_fraction": 0.5}})
    assert ok.train.hard_negative_fraction == 0.5
    with pytest.raises(CryoUNetError, match="positive_fraction [+] train.hard_negative_fraction"):
        CryoUNetConfig().updated({"train": {"positive_fraction": 0.6, "hard_negative_fraction": 0.5}})
    cfg = CryoUNetConfig()
    cfg.train.hard_negative_fraction = 0.7  # set directly (as a command line option would)
    with pytest.raises(CryoUNetError, match="must not exceed 1"):
        cfg.validate("command line")


def test_tile_overlap_smaller_than_tile_size() -> None:
    CryoUNetConfig().updated({"pick": {"tile_size": 64, "tile_overlap": 63}})
    for overlap in (64, 100):
        with pytest.raises(CryoUNetError, match="pick.tile_overlap must be smaller than pick.tile_size"):
            CryoUNetConfig().updated({"pick": {"tile_size": 64, "tile_overlap": overlap}})


@pytest.mark.parametrize("key", ["separation_weight", "separation_width"])
def test_separation_settings_bounded(key: str) -> None:
    assert getattr(CryoUNetConfig().updated({"target": {key: 0.0}}).target, key) == 0.0
    with pytest.raises(CryoUNetError, match=f"target[.]{key} must not be negative"):
        CryoUNetConfig().updated({"target": {key: -0.1}})
    with pytest.raises(CryoUNetError, match=f"target[.]{key} = 1000.0 is above"):
        CryoUNetConfig().updated({"target": {key: 1000.0}})


def test_ignore_radius_not_below_positive_radius() -> None:
    CryoUNetConfig().updated({"target": {"positive_radius": 0.3, "ignore_radius": 0.3}})
    with pytest.raises(CryoUNetError, match="target.ignore_radius must be >= target.positive_radius"):
        CryoUNetConfig().updated({"target": {"positive_radius": 0.3, "ignore_radius": 0.29}})


def test_pick_threshold_probability_or_null() -> None:
    for good in (0.0, 1.0, 0.5, None):
        assert CryoUNetConfig().updated({"pick": {"threshold": good}}).pick.threshold == good
    for bad in (-0.1, 1.5):
        with pytest.raises(CryoUNetError, match="pick.threshold must be between 0 and 1 \\(or null\\)"):
            CryoUNetConfig().updated({"pick": {"threshold": bad}})


@pytest.mark.parametrize("key", ["nms_radius", "edge_exclusion", "tile_overlap", "opening_radius",
                                 "min_component_area", "max_component_area"])
def test_pick_sizes_not_negative(key: str) -> None:
    with pytest.raises(CryoUNetError, match=f"pick.{key} must not be negative"):
        CryoUNetConfig().updated({"pick": {key: -1}})
    assert getattr(CryoUNetConfig().updated({"pick": {key: 0}}).pick, key) == 0


def test_learning_rate_and_weight_decay_not_negative() -> None:
    CryoUNetConfig().updated({"train": {"learning_rate": 0.0, "weight_decay": 0.0}})
    for key in ("learning_rate", "weight_decay"):
        with pytest.raises(CryoUNetError, match="must not be negative"):
            CryoUNetConfig().updated({"train": {key: -1e-3}})


def test_accuracy_options_have_off_defaults_and_json_form() -> None:
    cfg = CryoUNetConfig()
    assert (cfg.model.se, cfg.model.bottleneck_attention, cfg.model.attention_gates,
            cfg.model.blocks_per_level) == (False, False, False, 1)
    assert cfg.train.hard_negative_fraction == 0.0
    assert (cfg.pick.opening_radius, cfg.pick.min_component_area, cfg.pick.max_component_area) == (0, 0, 0)
    on = cfg.updated({"model": {"se": True, "bottleneck_attention": True, "attention_gates": True,
                                "blocks_per_level": 2},
                      "refine": {"checkpoint_ensemble": 3, "curriculum": False}})
    assert CryoUNetConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    with pytest.raises(CryoUNetError, match="model.se: expected true/false"):
        cfg.updated({"model": {"se": "yes"}})


@pytest.mark.parametrize("content, words", [
    (b'{"train": {"epochs": 3}, "train": {"epochs": 5}}', "the key 'train' appears twice"),
    (b'{"model": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    (b'{"train": {"epochs": 3}}\xff', "not a text (UTF-8) file"),
])
def test_config_files_that_json_would_misread(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "cfg.json"
    path.write_bytes(content)
    with pytest.raises(CryoUNetError, match="cfg.json: ") as caught:
        load_config(path)
    assert words in str(caught.value)


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 2 ** 64, 10 ** 30])
def test_seeds_out_of_range_are_refused(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(f'{{"train": {{"seed": {seed}}}}}')
    with pytest.raises(CryoUNetError, match=r"train.seed must be a whole number from 0 to 4294967295"):
        load_config(path)
