"""``cryounet show``: PNG pictures of picks drawn on micrographs (:mod:`cryounet.render`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from cryounet.io.coordinates import Picks, find_coordinate_file, read_coordinates
from cryounet.io.mrc import read_micrograph
from cryounet.render import draw_picks, new_figure, require_matplotlib, save_png

logger = logging.getLogger(__name__)

#: File name of a preview: ``<micrograph stem>`` + this.
PREVIEW_SUFFIX = "_picks.png"
#: What ``show`` writes in its output folder (what ``--overwrite`` removes from an unmarked one).
PREVIEW_PATTERNS = (f"*{PREVIEW_SUFFIX}",)


def preview_picks(micrograph: Path, picks_dir: Path) -> Picks:
    """The picks of ``micrograph`` in ``picks_dir`` (none, with a warning, when it has no file)."""
    pick_file = find_coordinate_file(micrograph.stem, picks_dir)
    if pick_file is None:
        logger.warning("%s: no pick file for it in %s: drawn without picks", micrograph, picks_dir)
        return Picks([])
    return read_coordinates(pick_file)


def write_preview(micrograph: Path, picks: Picks, diameter: float, path: Path) -> None:
    """One PNG of ``picks`` on ``micrograph`` (about 8 x 7.5 inches at 100 dpi)."""
    figure = new_figure(8.4, 7.6)
    draw_picks(figure, read_micrograph(micrograph), picks.xy, diameter, picks.scores, title=micrograph.name)
    figure.tight_layout()
    save_png(figure, path)


def write_pick_previews(micrographs: Sequence[Path], picks_dir: Path, diameter: float, output: Path,
                        count: int) -> list[Path]:
    """PNGs of the picks of the first ``count`` micrographs, ``<stem>_picks.png`` in ``output``."""
    require_matplotlib()
    written = []
    for micrograph in list(micrographs)[:count]:
        path = output / f"{micrograph.stem}{PREVIEW_SUFFIX}"
        write_preview(micrograph, preview_picks(micrograph, picks_dir), diameter, path)
        written.append(path)
    return written


def picks_diameter(picks_dir: Path, given: float | None) -> float:
    """The diameter to draw picks at: ``given``, else the one the pick folder's ``pick.json`` records.

    Raises:
        CryoUNetError: neither is known (picks made by other software, or an earlier CryoUNet).
    """
    from cryounet.errors import CryoUNetError
    from cryounet.io.picks_folder import RECORD_NAME, read_pick_record

    if given is not None:
        return float(given)
    record = read_pick_record(picks_dir)
    if record is None or record.diameter_px is None:
        raise CryoUNetError(f"{picks_dir}: its {RECORD_NAME} records no particle diameter; give --diameter "
                            "(in pixels of the micrographs)")
    return float(record.diameter_px)
