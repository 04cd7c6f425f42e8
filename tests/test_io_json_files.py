"""The one reader of users' JSON files (cryounet.io.json_files): every bad file is a clear error."""
from __future__ import annotations

from pathlib import Path

import pytest

from cryounet.errors import InputFileError
from cryounet.io.json_files import read_json


def test_a_good_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_bytes(b"\xef\xbb\xbf" + '{"a": {"b": [1, 2]}, "name": "\u00e9"}'.encode())
    assert read_json(path) == {"a": {"b": [1, 2]}, "name": "\u00e9"}


@pytest.mark.parametrize("content, words", [
    (b'{"train": {"epochs": 3, "epochs": 5}}', "the key 'epochs' appears twice in one object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"name": "caf\xe9"}', "not a text (UTF-8) file, so not a config file (byte 0xe9 at offset 13"),
    (b'{"a": 1,}', "not valid JSON"),
])
def test_bad_files_are_named_errors(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match="bad.json: ") as caught:
        read_json(path, "config file")
    assert words in str(caught.value)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="none.json: config file does not exist"):
        read_json(tmp_path / "none.json", "config file")
    with pytest.raises(InputFileError, match="is a folder, not a config file"):
        read_json(tmp_path, "config file")
