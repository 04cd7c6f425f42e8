"""The labelled datasets a training run learns from: from the command line's options or a
``--datasets`` JSON list, checked before anything is loaded.

A dataset is a dict with ``micrographs`` (paths, globs, folders or ``@lists``), ``coordinates`` (a
folder), ``diameter`` (px) and, optionally, ``valid_micrographs`` / ``valid_coordinates`` (its
validation micrographs; without them a fraction of its own is held out) or ``"validate": false``
(training only: none of its micrographs is held out, and it takes no part in validation or
calibration, e.g. for simulated data). At least one dataset of a list validates.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.json_files import read_json
from cryounet.io.micrographs import check_diameter

REQUIRED = ("micrographs", "coordinates", "diameter")
KEYS = REQUIRED + ("valid_micrographs", "valid_coordinates", "validate")


def datasets_from_options(micrographs: Sequence[str] | None, coordinates: Path | None, diameter: float | None,
                          valid_micrographs: Sequence[str] | None = None, valid_coordinates: Path | None = None,
                          datasets_file: Path | None = None) -> list[dict[str, Any]]:
    """The datasets to train on: the ``--datasets`` list, or the one the plain options give.

    Every coordinate folder is checked before anything is loaded or written (:func:`check_folders`).

    Raises:
        CryoUNetError: options missing or given together with ``--datasets``, an invalid list, or a
            coordinate folder that does not exist or is given as a file.
    """
    plain = {"--micrographs": micrographs, "--coordinates": coordinates, "--diameter": diameter}
    if datasets_file is None:
        missing = [option for option, value in plain.items() if value is None]
        if missing:
            raise CryoUNetError(f"give {', '.join(missing)} (or --datasets, a JSON list of datasets)")
        data = [{"micrographs": list(micrographs), "coordinates": coordinates, "diameter": diameter,
                 "valid_micrographs": valid_micrographs, "valid_coordinates": valid_coordinates}]
    else:
        if any(value is not None for value in plain.values()):
            raise CryoUNetError("--datasets replaces --micrographs/--coordinates/--diameter; give one or the other")
        data = read_dataset_list(datasets_file)
    for entry in data:
        if (entry.get("valid_micrographs") is None) != (entry.get("valid_coordinates") is None):
            raise CryoUNetError("--valid-micrographs and --valid-coordinates go together")
        check_folders(entry)
    return data


def check_folders(entry: dict[str, Any]) -> None:
    """Replace a dataset's coordinate folders by the existing folders they name: a pick folder's
    ``coordinates.star`` index stands for its folder, another file is refused naming its folder
    (:func:`~cryounet.io.folders.input_folder`)."""
    from cryounet.io.coordinates import is_folder_index
    from cryounet.io.folders import input_folder

    for key in ("coordinates", "valid_coordinates"):
        if entry.get(key) is not None:
            entry[key] = input_folder(entry[key], "coordinate folder", is_folder_index)


def read_dataset_list(path: Path) -> list[dict[str, Any]]:
    """A ``--datasets`` JSON list, each entry checked (keys, diameter, path types)."""
    try:
        data = read_json(path, "JSON dataset list")
    except InputFileError as exc:
        raise CryoUNetError(f"{path}: cannot read the dataset list ({exc.problem})") from None
    if not isinstance(data, list) or not data:
        raise CryoUNetError(f"{path}: expected a non-empty JSON list of datasets")
    entries = [_checked_entry(entry, f"{path}: dataset {i}") for i, entry in enumerate(data)]
    if not any(validates(entry) for entry in entries):
        raise CryoUNetError(f"{path}: every dataset has \"validate\": false; at least one must validate "
                            "(hold out some of its micrographs, or give its valid_micrographs)")
    return entries


def validates(entry: dict[str, Any]) -> bool:
    """Whether a dataset takes part in validation (all do unless ``"validate": false``)."""
    return entry.get("validate", True) is not False


def _checked_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not set(REQUIRED) <= set(entry):
        raise CryoUNetError(f"{where} needs {', '.join(REQUIRED)}")
    if set(entry) - set(KEYS):
        raise CryoUNetError(f"{where} has unknown keys {sorted(set(entry) - set(KEYS))}")
    if isinstance(entry["diameter"], bool):
        raise CryoUNetError(f"{where}: diameter must be a number of pixels, got {entry['diameter']!r}")
    entry["diameter"] = check_diameter(entry["diameter"], f"{where}: diameter")
    if not isinstance(entry.get("validate", True), bool):
        raise CryoUNetError(f"{where}: validate must be true or false, got {entry['validate']!r}")
    if entry.get("validate") is False and (entry.get("valid_micrographs") is not None
                                           or entry.get("valid_coordinates") is not None):
        raise CryoUNetError(f"{where} has \"validate\": false and validation micrographs or coordinates: "
                            "a training-only dataset has no validation set; drop one or the other")
    for key in ("micrographs", "valid_micrographs"):
        value = entry.get(key)
        if isinstance(value, str):
            entry[key] = [value]
        elif value is not None and not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            raise CryoUNetError(f"{where}: {key} must be a path or a list of paths, got {value!r}")
    for key in ("coordinates", "valid_coordinates"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise CryoUNetError(f"{where}: {key} must be a folder path, got {entry[key]!r}")
    return entry


def dataset_paths(datasets: Sequence[dict[str, Any]]) -> list[str | os.PathLike[str]]:
    """Every path the datasets name (micrograph sources and coordinate folders)."""
    paths: list[str | os.PathLike[str]] = []
    for entry in datasets:
        for key in ("micrographs", "coordinates", "valid_micrographs", "valid_coordinates"):
            value = entry.get(key)
            if value is not None:
                paths += value if isinstance(value, list) else [value]
    return paths


def labelled_micrographs(datasets: Sequence[dict[str, Any]]) -> int:
    """How many of the datasets' micrographs (validation included) have a coordinate file."""
    from cryounet.io.coordinates import list_coordinate_files
    from cryounet.io.micrographs import expand_micrographs

    count = 0
    for entry in datasets:
        for mics, coords in ((entry["micrographs"], entry["coordinates"]),
                             (entry.get("valid_micrographs"), entry.get("valid_coordinates"))):
            if mics is None or coords is None or not Path(coords).is_dir():
                continue
            stems = {p.stem for p in expand_micrographs(mics)}
            count += len(stems & set(list_coordinate_files(coords, stems=stems)))
    return count
