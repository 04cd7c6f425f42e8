"""The datasets of a training run (cryounet.io.datasets): from options or a --datasets list."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cryounet.errors import CryoUNetError
from cryounet.io.datasets import dataset_paths, datasets_from_options, labelled_micrographs

from engine_helpers import SimData


def test_missing_options_are_named() -> None:
    with pytest.raises(CryoUNetError, match=r"give --coordinates, --diameter \(or --datasets"):
        datasets_from_options(["mics/"], None, None)


def test_datasets_replaces_the_plain_options(tmp_path: Path) -> None:
    listing = tmp_path / "d.json"
    (tmp_path / "a").mkdir()
    listing.write_text(json.dumps([{"micrographs": "a/", "coordinates": str(tmp_path / "a"), "diameter": 40}]))
    with pytest.raises(CryoUNetError, match="replaces"):
        datasets_from_options(["mics/"], None, None, datasets_file=listing)
    data = datasets_from_options(None, None, None, datasets_file=listing)
    assert data == [{"micrographs": ["a/"], "coordinates": tmp_path / "a", "diameter": 40.0}]


def test_coordinate_folders_are_checked_before_anything_is_loaded(sim_data: SimData, tmp_path: Path) -> None:
    with pytest.raises(CryoUNetError, match="nothing: coordinate folder does not exist"):
        datasets_from_options(["m/"], tmp_path / "nothing", 40.0)
    listing = tmp_path / "d.json"
    listing.write_text(json.dumps([{"micrographs": "m/", "coordinates": str(sim_data.star(0)), "diameter": 40}]))
    with pytest.raises(CryoUNetError, match=r"mic_000.star is a file; give the coordinate folder that holds it"):
        datasets_from_options(None, None, None, datasets_file=listing)
    picks = tmp_path / "picks"
    shutil.copytree(sim_data.folder, picks)
    (picks / "coordinates.star").write_text("")
    data = datasets_from_options(["m/"], picks, 40.0, valid_micrographs=["v/"],
                                 valid_coordinates=picks / "coordinates.star")
    assert data[0]["valid_coordinates"] == picks


@pytest.mark.parametrize("entry, words", [
    ({"micrographs": "a/", "coordinates": "a/"}, "needs micrographs, coordinates, diameter"),
    ({"micrographs": "a/", "coordinates": "a/", "diameter": 40, "colour": 1}, "unknown keys ['colour']"),
    ({"micrographs": "a/", "coordinates": "a/", "diameter": True}, "diameter must be a number"),
    ({"micrographs": [], "coordinates": "a/", "diameter": 40}, "must be a path or a list of paths"),
    ({"micrographs": "a/", "coordinates": 3, "diameter": 40}, "must be a folder path"),
])
def test_a_bad_dataset_entry_is_named(tmp_path: Path, entry: dict, words: str) -> None:
    listing = tmp_path / "d.json"
    listing.write_text(json.dumps([entry]))
    with pytest.raises(CryoUNetError, match="dataset 0") as info:
        datasets_from_options(None, None, None, datasets_file=listing)
    assert words in str(info.value)


def test_validation_options_go_together() -> None:
    with pytest.raises(CryoUNetError, match="go together"):
        datasets_from_options(["m/"], Path("c"), 40.0, valid_micrographs=["v/"])


def test_labelled_micrographs_counts_those_with_coordinates(sim_data: SimData, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(sim_data.folder, folder)
    data = datasets_from_options([str(folder)], folder, 20.0)
    assert labelled_micrographs(data) == len(sim_data.micrographs)
    for star in sorted(folder.glob("*.star"))[1:]:
        star.unlink()
    assert labelled_micrographs(data) == 1
    assert set(dataset_paths(data)) == {str(folder), folder}


def _listing(tmp_path: Path, entries: list[dict]) -> Path:
    listing = tmp_path / "d.json"
    (tmp_path / "a").mkdir(exist_ok=True)
    listing.write_text(json.dumps(entries))
    return listing


def test_a_training_only_dataset_is_kept_with_its_key(tmp_path: Path) -> None:
    from cryounet.io.datasets import validates

    real = {"micrographs": "a/", "coordinates": str(tmp_path / "a"), "diameter": 40}
    sim = {"micrographs": "a/", "coordinates": str(tmp_path / "a"), "diameter": 60, "validate": False}
    data = datasets_from_options(None, None, None, datasets_file=_listing(tmp_path, [real, sim]))
    assert [validates(entry) for entry in data] == [True, False]
    assert data[1]["validate"] is False
    assert validates({**real, "validate": True})


@pytest.mark.parametrize("extra, words", [
    ({"validate": False, "valid_micrographs": "v/"}, 'dataset 1 has "validate": false and validation'),
    ({"validate": False, "valid_coordinates": "v/"}, 'dataset 1 has "validate": false and validation'),
    ({"validate": "no"}, "dataset 1: validate must be true or false, got 'no'"),
])
def test_a_contradictory_validate_key_is_named(tmp_path: Path, extra: dict, words: str) -> None:
    real = {"micrographs": "a/", "coordinates": str(tmp_path / "a"), "diameter": 40}
    listing = _listing(tmp_path, [real, {**real, **extra}])
    with pytest.raises(CryoUNetError) as info:
        datasets_from_options(None, None, None, datasets_file=listing)
    assert words in str(info.value) and str(listing) in str(info.value)


def test_at_least_one_dataset_validates(tmp_path: Path) -> None:
    sim = {"micrographs": "a/", "coordinates": str(tmp_path / "a"), "diameter": 60, "validate": False}
    with pytest.raises(CryoUNetError, match="at least one must validate"):
        datasets_from_options(None, None, None, datasets_file=_listing(tmp_path, [sim, sim]))
