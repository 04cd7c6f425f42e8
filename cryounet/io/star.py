"""STAR files (RELION, crYOLO CBOX): a strict reader of data blocks, loops and key-value pairs,
and the quoting of values written into one.

The reader refuses what it cannot read unambiguously (a label repeated in one loop or block, a row
with the wrong number of values, an unterminated quote, multi-line text fields) instead of
guessing. A ``loop_`` (or ``_label value`` pairs) before any ``data_`` line belongs to an unnamed
block, so a file written without its ``data_`` header is still read in full.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cryounet.errors import InputFileError

#: Words that STAR reserves at the start of a value; such values are written quoted.
_RESERVED = re.compile(r"^(data_|loop_|save_|global_|stop_)", re.IGNORECASE)


@dataclass
class StarLoop:
    """One ``loop_``: its labels (without the leading ``_``) and rows of text values."""

    labels: list[str]
    rows: list[list[str]] = field(default_factory=list)
    line: int = 0

    def column(self, label: str) -> list[str]:
        index = self.labels.index(label)
        return [row[index] for row in self.rows]


@dataclass
class StarBlock:
    """One ``data_NAME`` block (``name`` None for lines before any ``data_``)."""

    name: str | None
    pairs: dict[str, str] = field(default_factory=dict)
    loops: list[StarLoop] = field(default_factory=list)

    @property
    def title(self) -> str:
        return "text before any data_ line" if self.name is None else f"data_{self.name}"


def split_star_line(line: str) -> list[str]:
    """The values of one STAR line: whitespace-separated, ``'...'``/``"..."`` quoted (a quote closes
    only before whitespace or the line end), a ``#`` at the start of a value begins a comment.

    Raises:
        ValueError: an unterminated quote.
    """
    values: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] == "#":
            break
        if line[i] in "'\"":
            quote, j = line[i], i + 1
            while True:
                j = line.find(quote, j)
                if j < 0:
                    raise ValueError(f"unterminated {quote} quote")
                if j + 1 == n or line[j + 1].isspace():
                    break
                j += 1
            values.append(line[i + 1 : j])
            i = j + 1
            continue
        j = i
        while j < n and not line[j].isspace():
            j += 1
        values.append(line[i:j])
        i = j
    return values


class _Reader:
    """State of one pass over a STAR file's lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blocks: list[StarBlock] = []
        self.loop: StarLoop | None = None  # the loop being read
        self.in_labels = False  # reading the loop's labels (no row yet)

    def fail(self, lineno: int, problem: str) -> InputFileError:
        return InputFileError(self.path, f"line {lineno}: {problem}")

    @property
    def block(self) -> StarBlock:
        if not self.blocks:
            self.blocks.append(StarBlock(None))
        return self.blocks[-1]

    def line(self, lineno: int, text: str) -> None:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            return
        if stripped.startswith(";"):
            raise self.fail(lineno, "multi-line (;) text fields are not supported in coordinate files")
        word = stripped.split()[0]
        if word.lower().startswith("data_"):
            self.loop = None
            self.blocks.append(StarBlock(word[5:]))
        elif word.lower() == "loop_":
            self.loop = StarLoop([], line=lineno)
            self.in_labels = True
            self.block.loops.append(self.loop)
        elif word.startswith("_"):
            values = self._split(lineno, stripped)
            if self.loop is not None and self.in_labels and len(values) == 1:
                self._label(lineno, values[0][1:])
            else:
                self.loop = None  # a pair ends the loop before it
                self._pair(lineno, values)
        elif self.loop is not None:
            self._row(lineno, stripped)
        else:
            raise self.fail(lineno, f"{stripped[:60]!r} is neither a data_ line, a loop nor a _label")

    def _split(self, lineno: int, text: str) -> list[str]:
        try:
            return split_star_line(text)
        except ValueError as exc:
            raise self.fail(lineno, str(exc)) from None

    def _pair(self, lineno: int, values: list[str]) -> None:
        label = values[0][1:]
        if len(values) != 2:
            raise self.fail(lineno, f"_{label} needs exactly one value, found {len(values) - 1}")
        if label in self.block.pairs:
            raise self.fail(lineno, f"_{label} is given twice in {self.block.title}")
        self.block.pairs[label] = values[1]

    def _label(self, lineno: int, label: str) -> None:
        assert self.loop is not None
        if label in self.loop.labels:
            raise self.fail(lineno, f"label _{label} is repeated in the loop of line {self.loop.line}")
        self.loop.labels.append(label)

    def _row(self, lineno: int, text: str) -> None:
        assert self.loop is not None
        if not self.loop.labels:
            raise self.fail(lineno, "a loop_ row before any _label")
        self.in_labels = False
        values = self._split(lineno, text)
        if not values:
            return
        if len(values) != len(self.loop.labels):
            raise self.fail(lineno, f"{len(values)} values for the {len(self.loop.labels)} labels of "
                                    f"the loop of line {self.loop.line}")
        self.loop.rows.append(values)


def read_star(path: str | os.PathLike[str]) -> list[StarBlock]:
    """Every data block of a STAR file, in file order.

    Raises:
        InputFileError: the file cannot be read, or its structure is ambiguous (see the module doc).
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    reader = _Reader(path)
    for lineno, line in enumerate(text.splitlines(), 1):
        if "\0" in line:
            raise reader.fail(lineno, "binary data, not a STAR file")
        reader.line(lineno, line)
    return reader.blocks


def star_value(text: object) -> str:
    """``text`` as one STAR value: quoted when it is empty or holds whitespace, a ``#``, a quote, or
    starts like a STAR keyword or label, so that RELION, starfile and :func:`read_star` read it back
    whole (a path such as ``Movies #2/a b.mrc``).

    Raises:
        ValueError: the value holds a line break, or both kinds of quote next to whitespace.
    """
    text = str(text)
    if "\n" in text or "\r" in text:
        raise ValueError(f"{text!r}: a STAR value cannot hold a line break")
    plain = text and not any(c.isspace() or c in "#'\"" for c in text) \
        and text[0] not in "_$;[]" and not _RESERVED.match(text)
    if plain:
        return text
    for quote in ('"', "'"):
        # Inside quotes, the quote character ends the value only when whitespace follows it.
        if not re.search(re.escape(quote) + r"(\s|$)", text):
            return f"{quote}{text}{quote}"
    raise ValueError(f"{text!r}: cannot be quoted in a STAR file (both quote characters before spaces)")


def format_loop(block: str, labels: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A RELION-style STAR text: ``data_<block>``, one ``loop_`` with ``labels`` and ``rows``."""
    lines = ["", "# version 50001", "", f"data_{block}", "", "loop_"]
    lines += [f"_{label} #{i}" for i, label in enumerate(labels, 1)]
    lines += ["\t".join(star_value(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n\n"
