"""MRC reading and writing (cryounet.io.mrc)."""
from __future__ import annotations

import mmap
import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryounet.errors import InputFileError
from cryounet.io import mrc as mrc_module
from cryounet.io.mrc import check_mrc_header, micrograph_shape, read_micrograph, read_pixel_size, write_mrc


def _write(path: Path, data: np.ndarray, volume: bool = False) -> Path:
    with warnings.catch_warnings(), mrcfile.new(str(path), overwrite=True) as mrc:
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's header stats of NaN/Inf data
        mrc.set_data(data)
        if volume:
            mrc.set_volume()
    return path


def _pattern(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    values = (np.arange(int(np.prod(shape))).reshape(shape) * 7) % 101 - 50
    if np.issubdtype(dtype, np.unsignedinteger):
        values = values + 50
    return values.astype(dtype)


#: What a truncated or garbage file is refused with.
UNREADABLE = "truncated|not a readable MRC|no valid MRC header|too small"


def _refused(path: Path, match: str) -> InputFileError:
    with pytest.raises(InputFileError, match=match) as info:
        read_micrograph(path)
    assert str(path) in str(info.value)
    return info.value


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("mode, dtype", [(0, np.int8), (1, np.int16), (2, np.float32),
                                         (6, np.uint16), (12, np.float16)])
def test_real_modes_round_trip(tmp_path: Path, mode: int, dtype: type) -> None:
    data = _pattern((13, 21), dtype)
    path = _write(tmp_path / f"mode{mode}.mrc", data)
    with mrcfile.open(str(path)) as mrc:
        assert int(mrc.header.mode) == mode
    image = read_micrograph(path)
    assert image.shape == (13, 21)  # rows = y, columns = x
    assert image.dtype == dtype
    np.testing.assert_array_equal(np.asarray(image), data)
    assert micrograph_shape(path) == (13, 21)


def _bases(array: np.ndarray) -> list[object]:
    found = []
    while array is not None:
        found.append(array)
        array = getattr(array, "base", None)
    return found


def test_read_is_read_only_and_in_memory(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.mrc", _pattern((8, 9), np.float32))
    image = read_micrograph(path)
    assert not image.flags.writeable
    with pytest.raises(ValueError):
        image[0, 0] = 1.0
    # not memory-mapped: a file truncated later cannot SIGBUS a reader of the array
    assert not any(isinstance(b, (np.memmap, mmap.mmap)) for b in _bases(image))
    path.write_bytes(b"")
    assert float(np.asarray(image, dtype=np.float64).sum()) == float(_pattern((8, 9), np.float32).sum())


def test_file_truncated_between_header_check_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A streaming pipeline rewrites the file after its header was checked: a clear error (the
    batch skips that micrograph), never a short image or a crash."""
    path = _write(tmp_path / "live.mrc", _pattern((64, 64), np.float32))
    checked = mrc_module._read_header

    def check_then_truncate(p: Path):
        header = checked(p)
        with open(p, "r+b") as handle:
            handle.truncate(1024 + 64 * 64 * 4 - 100)
        return header

    monkeypatch.setattr(mrc_module, "_read_header", check_then_truncate)
    err = _refused(path, "truncated while it was read: 16284 of 16384 bytes")
    assert "another program" in str(err)


def test_short_reads_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network file system may return fewer bytes than asked: the reader asks again."""
    data = _pattern((40, 30), np.float32)
    path = _write(tmp_path / "nfs.mrc", data)
    monkeypatch.setattr(mrc_module, "_READ_CHUNK", 7)
    np.testing.assert_array_equal(read_micrograph(path), data)


def _stamp_imod(path: Path, flags: int, endian: str = "<") -> None:
    raw = bytearray(path.read_bytes())
    raw[152:160] = struct.pack(endian + "2i", mrc_module.IMOD_STAMP, flags)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("flags, dtype", [(0, np.uint8), (2, np.uint8), (1, np.int8), (3, np.int8)])
def test_imod_mode0_signed_flag(tmp_path: Path, flags: int, dtype: type) -> None:
    """IMOD's stamp without its 'signed bytes' flag (bit 0) means unsigned bytes."""
    raw = (np.arange(12 * 10).reshape(12, 10) * 2).astype(np.uint8)  # 0..238, half above 127
    path = _write(tmp_path / "imod.mrc", raw.view(np.int8))
    _stamp_imod(path, flags)
    image = read_micrograph(path)
    assert image.dtype == dtype
    np.testing.assert_array_equal(image, raw.view(dtype))


def test_mode0_without_imod_stamp_is_signed(tmp_path: Path) -> None:
    raw = (np.arange(12 * 10).reshape(12, 10) * 2).astype(np.uint8)
    path = _write(tmp_path / "std.mrc", raw.view(np.int8))
    raw_header = path.read_bytes()[152:160]
    assert struct.unpack("<2i", raw_header)[0] != mrc_module.IMOD_STAMP
    assert read_micrograph(path).dtype == np.int8


def test_big_endian_file_read_in_native_order(tmp_path: Path) -> None:
    data = _pattern((9, 11), np.float32)
    path = tmp_path / "big.mrc"
    with mrcfile.new(str(path)) as mrc:
        mrc.set_data(data.astype(">f4"))
        mrc.voxel_size = 2.5
    image = read_micrograph(path)
    assert image.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(image, data)
    assert micrograph_shape(path) == (9, 11) and read_pixel_size(path) == pytest.approx(2.5)


def test_extended_header_is_skipped(tmp_path: Path) -> None:
    data = _pattern((8, 6), np.int16)
    path = tmp_path / "ext.mrc"
    with mrcfile.new(str(path)) as mrc:
        mrc.set_extended_header(np.zeros(100, dtype="V1"))
        mrc.set_data(data)
    np.testing.assert_array_equal(read_micrograph(path), data)


def test_single_section_3d_is_a_2d_micrograph(tmp_path: Path) -> None:
    data = _pattern((1, 10, 12), np.float32)
    image = read_micrograph(_write(tmp_path / "one.mrc", data))
    assert image.shape == (10, 12)
    np.testing.assert_array_equal(image, data[0])


def test_write_mrc_round_trip_with_pixel_size(tmp_path: Path) -> None:
    data = np.random.default_rng(0).standard_normal((20, 30)).astype(np.float64)
    path = tmp_path / "sub" / "w.mrc"
    write_mrc(path, data, pixel_size=1.25)
    image = read_micrograph(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, data.astype(np.float32))
    assert read_pixel_size(path) == pytest.approx(1.25)
    assert micrograph_shape(path) == (20, 30)
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.mrc"]  # no temp file left


def test_pixel_size_unset_is_none(tmp_path: Path) -> None:
    path = tmp_path / "w.mrc"
    write_mrc(path, _pattern((8, 8), np.float32))
    assert read_pixel_size(path) is None


def test_write_mrc_refuses_non_2d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2D"):
        write_mrc(tmp_path / "x.mrc", np.zeros((2, 4, 4)))
    assert not (tmp_path / "x.mrc").exists()


# ------------------------------------------------------------------------------------ refusals
def test_stack_refused(tmp_path: Path) -> None:
    err = _refused(_write(tmp_path / "stack.mrc", _pattern((3, 8, 8), np.float32)),
                   "stack or volume")
    assert "3 sections" in str(err)


def test_volume_refused(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((4, 8, 8)).astype(np.float32)
    _refused(_write(tmp_path / "vol.mrc", data, volume=True), "stack or volume of 4")


def test_complex_mode_refused(tmp_path: Path) -> None:
    data = (np.arange(20).reshape(4, 5) + 1j).astype(np.complex64)
    _refused(_write(tmp_path / "complex.mrc", data), "mode 4")


def test_one_row_image_refused(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "row.mrc", np.arange(8, dtype=np.float32)[None]), "2D micrograph")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_refused(tmp_path: Path, bad: float) -> None:
    data = _pattern((16, 16), np.float32)
    data[5, 7] = bad
    _refused(_write(tmp_path / "bad.mrc", data), "NaN or infinite")


def test_non_finite_value_found_beyond_first_row_block(tmp_path: Path) -> None:
    # The check reads the memory map in blocks of rows; a NaN in a later block must be found too.
    data = _pattern((600, 8), np.float32)
    data[590, 3] = np.nan
    err = _refused(_write(tmp_path / "late_nan.mrc", data), "NaN")
    assert "rows from 512" in str(err)


def test_float16_inf_refused(tmp_path: Path) -> None:
    data = _pattern((8, 8), np.float16)
    data[0, 0] = np.inf
    _refused(_write(tmp_path / "half.mrc", data), "NaN or infinite")


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_constant_image_refused(tmp_path: Path, dtype: type) -> None:
    _refused(_write(tmp_path / "flat.mrc", np.full((10, 10), 3, dtype=dtype)), "constant")


def test_missing_file_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.mrc", "does not exist")
    with pytest.raises(InputFileError, match="does not exist"):
        micrograph_shape(tmp_path / "nope.mrc")


@pytest.mark.parametrize("keep", [1024 + 100, 1024, 500, 0])
def test_truncated_file_refused(tmp_path: Path, keep: int) -> None:
    full = _write(tmp_path / "full.mrc", _pattern((64, 64), np.float32))
    cut = tmp_path / f"cut_{keep}.mrc"
    cut.write_bytes(full.read_bytes()[:keep])
    _refused(cut, UNREADABLE)


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(5000), b"hello world\n" * 300],
                         ids=["random-bytes", "text"])
def test_garbage_file_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.mrc"
    path.write_bytes(content)
    _refused(path, UNREADABLE)


def test_micrograph_shape_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mrc"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InputFileError, match="garbage.mrc"):
        micrograph_shape(path)


# ----------------------------------------------------------------------- header check and fuzzing
def test_check_mrc_header_messages(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.mrc", _pattern((16, 16), np.float32))
    assert check_mrc_header(good) is None
    truncated = tmp_path / "trunc.mrc"
    truncated.write_bytes(good.read_bytes()[:-10])
    assert check_mrc_header(truncated).startswith("truncated: ")
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(b"\xff" * 2048)
    assert check_mrc_header(garbage).startswith("no valid MRC header")
    tiny = tmp_path / "tiny.mrc"
    tiny.write_bytes(b"MRC")
    assert "too small" in check_mrc_header(tiny)
    assert "3 sections" in check_mrc_header(_write(tmp_path / "s.mrc", _pattern((3, 8, 8), np.float32)))
    assert "cannot be read" in check_mrc_header(tmp_path / "missing.mrc")


#: Header words (0-based int32 index) and the values every one of them is fuzzed with.
_FIELDS = {"nx": 0, "ny": 1, "nz": 2, "mode": 3, "mapc": 16, "mapr": 17, "maps": 18, "nsymbt": 23}
_VALUES = (0, -1, -256, 1, 2, 99, 65536, 2**31 - 1)


def _with_header(template: bytes, values: dict[str, int]) -> bytes:
    header = bytearray(template)
    for name, value in values.items():
        word = _FIELDS[name]
        header[4 * word: 4 * word + 4] = struct.pack("<i", value)
    return bytes(header)


def _read_or_refuse(path: Path) -> str:
    """'read' or 'refused': never any other exception, and a refusal names the file."""
    try:
        image = read_micrograph(path)
    except InputFileError as exc:
        assert str(path) in str(exc)
        return "refused"
    assert image.ndim == 2 and min(image.shape) >= 2
    return "read"


@pytest.fixture(scope="module")
def header_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = _write(tmp_path_factory.mktemp("mrc") / "t.mrc",
                  np.random.default_rng(3).random((64, 48)).astype(np.float32))
    return path.read_bytes()


@pytest.mark.parametrize("field", sorted(_FIELDS))
def test_each_header_field_fuzzed_is_read_or_refused(tmp_path: Path, header_template: bytes, field: str) -> None:
    outcomes = {}
    for value in _VALUES:
        path = tmp_path / f"{field}_{value}.mrc"
        path.write_bytes(_with_header(header_template, {field: value}))
        outcomes[value] = _read_or_refuse(path)
    assert "refused" in outcomes.values()


def test_random_header_combinations_are_read_or_refused(tmp_path: Path, header_template: bytes) -> None:
    rng = np.random.default_rng(11)
    outcomes = []
    for i in range(300):
        values = {name: int(rng.choice(_VALUES)) for name in _FIELDS if rng.random() < 0.5}
        path = tmp_path / f"combo_{i}.mrc"
        path.write_bytes(_with_header(header_template, values))
        outcomes.append(_read_or_refuse(path))
    assert outcomes.count("refused") > 100


def test_negative_dimensions_are_refused_before_mrcfile_sees_them(tmp_path: Path, header_template: bytes) -> None:
    path = tmp_path / "negative.mrc"
    path.write_bytes(_with_header(header_template, {"nx": -256, "ny": -1}))
    with pytest.raises(InputFileError, match="no valid MRC header"):
        read_micrograph(path)


def test_huge_declared_size_is_refused_without_reading(tmp_path: Path, header_template: bytes) -> None:
    path = tmp_path / "huge.mrc"
    path.write_bytes(_with_header(header_template, {"nx": 60000, "ny": 60000}))
    assert "larger than any micrograph" in check_mrc_header(path)
    path.write_bytes(_with_header(header_template, {"nx": 30000, "ny": 30000}))
    assert check_mrc_header(path).startswith("truncated: ")
