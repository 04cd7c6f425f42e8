"""Reading the JSON files users give or edit (configs, dataset lists, model and pick folder records).

One reader, so that every such file fails the same clear way: a missing file, a folder, bytes that
are not UTF-8, invalid JSON, nesting too deep to parse, and a key given twice in one object (which
``json`` would silently resolve by keeping the last value) are each an :class:`InputFileError` naming
the file and the problem.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryounet.errors import InputFileError


class DuplicateKey(ValueError):
    """A JSON object gives the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def parse_json(text: str, path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse ``text`` (the contents of ``path``, a ``what``) with the checks of :func:`read_json`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        raise InputFileError(path, f"{what}: the key {exc.key!r} appears twice in one object (JSON would "
                                   "keep only the last value): remove one of them") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise InputFileError(path, f"{what} is nested too deeply to be read (objects or lists inside "
                                   "each other thousands of levels deep): not a CryoUNet file") from None


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The parsed contents of the UTF-8 JSON file ``path`` (a ``what``, for the messages).

    Raises:
        InputFileError: the file is missing, a folder, unreadable, not UTF-8, not valid JSON, nested
            too deeply, or has a key twice in one object.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, f"{what} does not exist") from None
    except IsADirectoryError:
        raise InputFileError(path, f"is a folder, not a {what}") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read the {what} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not a text (UTF-8) file, so not a {what} (byte "
                                   f"0x{data[exc.start]:02x} at offset {exc.start}; save it as UTF-8)") from None
    return parse_json(text.removeprefix("\ufeff"), path, what)
