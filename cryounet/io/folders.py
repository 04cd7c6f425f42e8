"""Folders a user names: the one rule for a file given where its folder is expected, and the sign
of a glob the shell expanded into many arguments.

A file where a folder is expected is refused with the folder to give instead ("x.star is a file;
give the coordinates folder that holds it (picks)"), except where the file stands for its folder
without doubt (a model folder's own files, a pick folder's ``coordinates.star`` index): then that
folder is used, said in an INFO line. A lone coordinate file is never taken for its folder (the
folder may hold files the user did not mean).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)

#: Whether a file stands for the folder that holds it (a model's weights, a pick folder's index).
StandsFor = Callable[[Path], bool]


def folder_of(path: str | os.PathLike[str], what: str, stands_for: StandsFor | None = None) -> Path:
    """``path`` itself, unless it is a file: then the folder that holds it when ``stands_for(path)``
    (logged), else an error naming that folder. A missing path is returned as it is (the reader
    says it does not exist).

    Raises:
        CryoUNetError: ``path`` is a file that does not stand for its folder.
    """
    path = Path(path)
    if not path.is_file():
        return path
    folder = path.parent
    if stands_for is not None and stands_for(path):
        logger.info("%s is a file: using the %s that holds it, %s", path, what, folder)
        return folder
    raise CryoUNetError(f"{path} is a file; give the {what} that holds it ({folder})")


def input_folder(path: str | os.PathLike[str], what: str, stands_for: StandsFor | None = None) -> Path:
    """The existing folder ``path`` names (see :func:`folder_of` for a file).

    Raises:
        CryoUNetError: the folder does not exist, or ``path`` is a file that does not stand for it.
    """
    folder = folder_of(path, what, stands_for)
    if not folder.is_dir():
        raise CryoUNetError(f"{folder}: {what} does not exist")
    return folder


#: Fewest paths of one folder and suffix in a row that look like a glob the shell expanded.
GLOB_RUN = 2


def expanded_glob(argv: Sequence[str], named: str) -> str | None:
    """The glob (``'picks/*.star'``) the shell seems to have expanded into the arguments around
    one that ``named`` (an error message) mentions: a run of at least :data:`GLOB_RUN` existing
    paths in ``argv``, not options, in one folder with one suffix. None when there is no such run."""
    runs: list[list[str]] = [[]]
    for token in argv:
        if token.startswith("-"):
            runs.append([])
        else:
            runs[-1].append(token)
    for run in runs:
        paths = [Path(t) for t in run if os.path.lexists(t)]
        if len(paths) < GLOB_RUN or not any(t in named for t in run if os.path.lexists(t)):
            continue
        kinds = {(p.parent, p.suffix) for p in paths}
        if len(kinds) == 1:
            parent, suffix = kinds.pop()
            return f"'{parent / ('*' + suffix)}'" if str(parent) != "." else f"'*{suffix}'"
    return None


def glob_hint(argv: Sequence[str], message: str) -> str:
    """What to add to a command-line error ``message`` whose arguments look like an expanded glob
    (empty when they do not)."""
    pattern = expanded_glob(argv, message)
    if pattern is None:
        return ""
    return (f" (these look like a glob the shell expanded: quote globs ({pattern}) so that cryounet "
            "expands them, or give the folder)")
