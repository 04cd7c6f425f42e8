"""Property-based tests of the readers (hypothesis): whatever bytes a user hands CryoUNet as an MRC,
STAR, BOX or CSV file or as a JSON config, the result is a value or a clear error naming the file,
never another exception."""
from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryounet.config import CryoUNetConfig, load_config
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import read_coordinates
from cryounet.io.mrc import read_micrograph

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Text that looks like coordinate files: numbers, separators, STAR words, junk.
_TOKENS = st.sampled_from(["data_", "data_x", "loop_", "_rlnCoordinateX", "_rlnCoordinateY", "#1", "#2",
                           "_rlnAutopickFigureOfMerit", "_rlnMicrographName", "1", "2.5", "-3", "nan",
                           "inf", "1e400", "x", ",", ";", "\t", " ", "\n", "\"a b\"", "'", "#", "é"])
_TEXT = st.lists(_TOKENS, max_size=60).map("".join)


def _reads_or_refuses(path: Path, reader) -> None:
    try:
        result = reader(path)
    except CryoUNetError as exc:
        assert str(path) in str(exc)
        return
    if hasattr(result, "xy"):
        assert result.xy.ndim == 2 and result.xy.shape[1] == 2 and np.isfinite(result.xy).all()


@SETTINGS
@given(content=st.one_of(_TEXT, st.binary(max_size=400)),
       suffix=st.sampled_from([".star", ".box", ".csv", ".txt", ".coords"]))
def test_coordinate_readers_never_raise_anything_else(content, suffix) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"mic{suffix}"
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        _reads_or_refuses(path, read_coordinates)


_HEADER_VALUES = st.one_of(st.sampled_from([0, -1, -256, 1, 2, 16, 99, 65536, 2**31 - 1]),
                           st.integers(-(2**31), 2**31 - 1))


@SETTINGS
@given(words=st.dictionaries(st.sampled_from([0, 1, 2, 3, 16, 17, 18, 23, 52, 53]), _HEADER_VALUES,
                             max_size=6),
       tail=st.integers(0, 4096), garbage=st.binary(max_size=64))
def test_mrc_reader_never_raises_anything_else(words, tail, garbage) -> None:
    header = bytearray(1024)
    header[0:16] = struct.pack("<4i", 32, 24, 1, 2)
    header[64:76] = struct.pack("<3i", 1, 2, 3)
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"
    for word, value in words.items():
        header[4 * word: 4 * word + 4] = struct.pack("<i", value)
    body = np.random.default_rng(tail).random(32 * 24).astype(np.float32).tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.mrc"
        path.write_bytes(bytes(header) + body[: tail * 4] + garbage)
        _reads_or_refuses(path, read_micrograph)


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
_SECTIONS = st.dictionaries(
    st.sampled_from(["preprocess", "target", "model", "loss", "augment", "train", "pick", "refine", "x"]),
    st.one_of(st.dictionaries(st.sampled_from(["depth", "base_channels", "epochs", "learning_rate", "threshold",
                                               "tile_size", "tile_overlap", "preset", "name", "tta", "shape",
                                               "architecture", "nms_radius", "rounds", "bogus"]),
                              _JSON_VALUES, max_size=4), _JSON_VALUES),
    max_size=4)


@SETTINGS
@given(data=st.one_of(_SECTIONS, _JSON_VALUES))
def test_config_loader_gives_a_config_or_a_clear_error(data) -> None:
    try:
        cfg = CryoUNetConfig.from_dict(data) if isinstance(data, dict) else CryoUNetConfig().updated(data)
    except CryoUNetError:
        return
    cfg.validate()  # what it accepted is valid


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200), _TEXT, _SECTIONS.map(json.dumps)))
def test_config_files_give_a_config_or_a_clear_error(content) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.json"
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        try:
            load_config(path)
        except CryoUNetError as exc:
            assert str(path) in str(exc) or "config" in str(exc)
