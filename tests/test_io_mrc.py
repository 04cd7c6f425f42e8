"""MRC reading and writing (cryounet.io.mrc)."""
from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryounet.errors import InputFileError
from cryounet.io.mrc import micrograph_shape, read_micrograph, read_pixel_size, write_mrc


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
UNREADABLE = "truncated|not a readable MRC"


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


def test_read_is_read_only_memory_map(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.mrc", _pattern((8, 9), np.float32))
    image = read_micrograph(path)
    assert not image.flags.writeable
    with pytest.raises(ValueError):
        image[0, 0] = 1.0


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
