"""Reading and writing MRC micrographs.

Micrographs are opened memory-mapped, so an 8k x 8k image is not loaded until it is used. Stacks,
volumes, complex modes, non-finite values and constant images are refused with a clear error.
"""
from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cryounet.errors import InputFileError
from cryounet.io.atomic import atomic_path

logger = logging.getLogger(__name__)

#: Bytes per pixel of the MRC modes holding real-valued 2D images (0 int8, 1 int16, 2 float32,
#: 6 uint16, 12 float16).
MODE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}
REAL_MODES = tuple(MODE_BYTES)
#: Largest micrograph side accepted from a header (a K3 super-resolution frame is 11520 px).
MAX_SIDE = 32768
#: Rows checked at a time for NaN/Inf, so the check never loads a whole 8k image as float64.
_CHECK_ROWS = 512
_HEADER_BYTES = 1024


def check_mrc_header(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with an MRC micrograph's header, judged from its 1024 header bytes and the
    file size alone (no image data is read), or None when it declares a readable 2D image.

    Checked: the file can be read and holds a header; the dimensions (nx, ny, nz) and mode, in
    either byte order; one section only; the axis order (mapc, mapr, maps); the extended header
    size (nsymbt); a side of at most :data:`MAX_SIDE`; and that the file holds all declared data.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            header = handle.read(_HEADER_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if len(header) < _HEADER_BYTES:
        return f"too small to be an MRC file ({size} bytes)"
    for endian in ("<", ">"):
        nx, ny, nz, mode = struct.unpack(endian + "4i", header[:16])
        if 0 < nx < 1 << 24 and 0 < ny < 1 << 24 and 0 < nz < 1 << 24 and 0 <= mode < 1 << 8:
            break
    else:
        nx, ny, nz, mode = struct.unpack("<4i", header[:16])
        return f"no valid MRC header (nx, ny, nz = {nx}, {ny}, {nz}; mode {mode})"
    if mode not in MODE_BYTES:
        return f"MRC mode {mode} is not a real-valued image mode {REAL_MODES}"
    if nz != 1:
        return f"is a stack or volume of {nz} sections; give single 2D micrographs"
    if min(nx, ny) < 2:
        return f"expected a 2D micrograph, found {nx} x {ny} pixels"
    if max(nx, ny) > MAX_SIDE:
        return f"{nx} x {ny} pixels is larger than any micrograph CryoUNet reads ({MAX_SIDE} px a side)"
    axes = struct.unpack(endian + "3i", header[64:76])
    if axes not in ((1, 2, 3), (0, 0, 0)):
        return f"axis order (mapc, mapr, maps) = {axes} is not the standard (1, 2, 3)"
    nsymbt = struct.unpack(endian + "i", header[92:96])[0]
    if nsymbt < 0:
        return f"extended header size (nsymbt) {nsymbt} is negative"
    expected = _HEADER_BYTES + nsymbt + nx * ny * MODE_BYTES[mode]
    if size < expected:
        return f"truncated: {size} bytes, {expected} expected for {nx} x {ny} pixels of mode {mode}"
    return None


def _open(path: Path) -> mrcfile.mrcfile.MrcFile:
    if not path.is_file():
        raise InputFileError(path, "micrograph file does not exist")
    problem = check_mrc_header(path)
    if problem:
        raise InputFileError(path, problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return mrcfile.mmap(str(path), mode="r", permissive=True)
    except (ValueError, OSError, MemoryError) as exc:
        raise InputFileError(path, f"not a readable MRC file ({exc})") from None


def _image_view(path: Path) -> np.ndarray:
    """The memory-mapped 2D image of a file, after the structural checks (no value checks)."""
    mrc = _open(path)
    data = mrc.data
    if data is None:
        raise InputFileError(path, "MRC header is invalid or the file is truncated (no data)")
    mode = int(mrc.header.mode)
    if mode not in REAL_MODES:
        raise InputFileError(path, f"MRC mode {mode} is not a real-valued image mode {REAL_MODES}")
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise InputFileError(
                path, f"is a stack or volume of {data.shape[0]} sections; give single 2D micrographs"
            )
        data = data[0]
    if data.ndim != 2 or min(data.shape) < 2:
        raise InputFileError(path, f"expected a 2D micrograph, found data of shape {data.shape}")
    return data


def read_micrograph(path: str | os.PathLike[str]) -> np.ndarray:
    """Return the 2D image of an MRC micrograph as a read-only, memory-mapped array.

    Args:
        path: MRC file holding one 2D image (mode 0, 1, 2, 6 or 12; ``nz`` must be 1).

    Returns:
        Array of shape ``(ny, nx)`` (rows = y, columns = x) in the file's dtype.

    Raises:
        InputFileError: missing or unreadable file, header problems, a stack or volume, a complex
            mode, NaN/Inf values or a constant image.
    """
    path = Path(path)
    data = _image_view(path)
    _check_values(path, data)
    return data


def _check_values(path: Path, data: np.ndarray) -> None:
    """Refuse NaN/Inf and constant images, reading the memory map in row blocks."""
    lo, hi = np.inf, -np.inf
    for start in range(0, data.shape[0], _CHECK_ROWS):
        block = np.asarray(data[start : start + _CHECK_ROWS], dtype=np.float32)
        if not np.isfinite(block).all():
            bad = int((~np.isfinite(block)).sum())
            raise InputFileError(path, f"contains {bad}+ NaN or infinite values (rows from {start})")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if hi <= lo:
        raise InputFileError(path, f"image is constant (every pixel is {lo}); nothing can be picked")


def read_pixel_size(path: str | os.PathLike[str]) -> float | None:
    """Pixel size in Angstrom from the MRC header, or None when the header leaves it at 0."""
    mrc = _open(Path(path))
    size = float(mrc.voxel_size.x)
    return size if size > 0 else None


def micrograph_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(ny, nx)`` of a micrograph, from its header (checked against the file's size)."""
    ny, nx = _image_view(Path(path)).shape
    return int(ny), int(nx)


def write_mrc(
    path: str | os.PathLike[str], image: np.ndarray, pixel_size: float | None = None
) -> None:
    """Write a 2D float32 image as an MRC file, atomically."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"write_mrc expects a 2D image, got shape {image.shape}")
    with atomic_path(path) as tmp:
        with mrcfile.new(str(tmp), overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
            if pixel_size:
                mrc.voxel_size = pixel_size
