"""Reading and writing MRC micrographs.

A micrograph is read into memory with plain reads of exactly the byte count its header declares,
never memory-mapped: a file that shrinks while it is read (a streaming pipeline rewriting it, a
network file system) is then a short read, refused with a clear error, instead of a SIGBUS that
would kill the process. Stacks, volumes, complex modes, non-finite values and constant images are
refused with a clear error. Mode 0 is signed 8-bit (MRC2014) unless IMOD's stamp is present without
its "signed bytes" flag, which marks unsigned bytes (IMOD's own convention).
"""
from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
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
_MODE_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
#: IMOD's header stamp (word 39, bytes 152-155) and its flag "bytes are stored signed" (word 40, bit 0).
IMOD_STAMP = 1146047817
IMOD_SIGNED_BYTES = 1
#: Largest micrograph side accepted from a header (a K3 super-resolution frame is 11520 px).
MAX_SIDE = 32768
#: Rows checked at a time for NaN/Inf, so the check never converts a whole 8k image to float64.
_CHECK_ROWS = 512
_HEADER_BYTES = 1024
#: Bytes asked of the operating system per read (a short read is retried until the file ends).
_READ_CHUNK = 1 << 24


@dataclass(frozen=True)
class MrcHeader:
    """What CryoUNet uses of a checked MRC header."""

    nx: int
    ny: int
    mode: int
    dtype: np.dtype
    data_offset: int
    pixel_size: float | None

    @property
    def data_bytes(self) -> int:
        return self.nx * self.ny * MODE_BYTES[self.mode]


def _parse_header(header: bytes, size: int) -> MrcHeader | str:
    """The header of a file of ``size`` bytes, or what is wrong with it."""
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
    code = _MODE_DTYPES[mode]
    stamp, flags = struct.unpack(endian + "2i", header[152:160])
    if mode == 0 and stamp == IMOD_STAMP and not flags & IMOD_SIGNED_BYTES:
        code = "u1"  # IMOD: unsigned bytes unless the flag says signed
    mx = struct.unpack(endian + "i", header[28:32])[0]
    cell_x = struct.unpack(endian + "f", header[40:44])[0]
    pixel = cell_x / mx if mx > 0 and np.isfinite(cell_x) and cell_x > 0 else None
    return MrcHeader(nx, ny, mode, np.dtype(endian + code), _HEADER_BYTES + nsymbt, pixel)


def _read_header(path: Path) -> MrcHeader | str:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            header = handle.read(_HEADER_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return _parse_header(header, size)


def check_mrc_header(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with an MRC micrograph's header, judged from its 1024 header bytes and the
    file size alone (no image data is read), or None when it declares a readable 2D image.

    Checked: the file can be read and holds a header; the dimensions (nx, ny, nz) and mode, in
    either byte order; one section only; the axis order (mapc, mapr, maps); the extended header
    size (nsymbt); a side of at most :data:`MAX_SIDE`; and that the file holds all declared data.
    """
    header = _read_header(Path(path))
    return header if isinstance(header, str) else None


def _header(path: Path) -> MrcHeader:
    if not path.is_file():
        raise InputFileError(path, "micrograph file does not exist")
    header = _read_header(path)
    if isinstance(header, str):
        raise InputFileError(path, header)
    return header


def _read_exactly(path: Path, header: MrcHeader) -> np.ndarray:
    """The image bytes the header declares, read (not mapped) into a new array; a file that has
    become shorter since its header was checked is refused."""
    data = np.empty(header.ny * header.nx, dtype=header.dtype)
    buffer = memoryview(data).cast("B")
    done = 0
    try:
        with open(path, "rb") as handle:
            handle.seek(header.data_offset)
            while done < header.data_bytes:
                count = handle.readinto(buffer[done : done + _READ_CHUNK])
                if not count:
                    break
                done += count
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if done < header.data_bytes:
        raise InputFileError(path, f"truncated while it was read: {done} of {header.data_bytes} bytes of "
                             "image data (is another program still writing or replacing it?)")
    return data.reshape(header.ny, header.nx)


def read_micrograph(path: str | os.PathLike[str]) -> np.ndarray:
    """Return the 2D image of an MRC micrograph as a read-only array in memory.

    Args:
        path: MRC file holding one 2D image (mode 0, 1, 2, 6 or 12; ``nz`` must be 1).

    Returns:
        Array of shape ``(ny, nx)`` (rows = y, columns = x) in the file's pixel type, native byte
        order (mode 0 of an IMOD file without its signed flag: ``uint8``).

    Raises:
        InputFileError: missing or unreadable file, header problems, a stack or volume, a complex
            mode, a file shorter than its header declares (also when it shrinks during the read),
            NaN/Inf values or a constant image.
    """
    path = Path(path)
    header = _header(path)
    data = _read_exactly(path, header)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    _check_values(path, data)
    data.flags.writeable = False
    return data


def _check_values(path: Path, data: np.ndarray) -> None:
    """Refuse NaN/Inf and constant images, checking the image in blocks of rows."""
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
    """Pixel size in Angstrom from the MRC header (cell x / mx), or None when the header leaves it at 0."""
    return _header(Path(path)).pixel_size


def micrograph_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(ny, nx)`` of a micrograph, from its header (checked against the file's size)."""
    header = _header(Path(path))
    return header.ny, header.nx


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
