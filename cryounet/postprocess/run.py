"""``cryounet postprocess`` as a stage: read a pick folder, filter every micrograph's picks, write
the filtered folder with its record."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryounet.errors import CryoUNetError
from cryounet.postprocess.filters import FilterConfig, filter_picks

logger = logging.getLogger(__name__)


@dataclass
class PostprocessRequest:
    """What a post-processing run reads and writes.

    Attributes:
        picks: the pick folder read.
        output: the folder written (never ``picks``).
        threshold: a score, ``"otsu"`` (read from the candidates' scores:
            :mod:`cryounet.postprocess.threshold_rules`) or None (no threshold).
        micrographs: micrograph sources (for the edge filter and the index's names), or None.
        overwrite: replace an earlier run's outputs in ``output``.
    """

    picks: Path
    output: Path
    threshold: float | str | None = None
    nms_distance: float | None = None
    edge_distance: float = 0.0
    max_per_micrograph: int = 0
    micrographs: Sequence[str] | None = None
    overwrite: bool = False


def read_folder(picks: Path) -> dict:
    """Every pick file of a folder, read: ``{stem: (path, Picks)}``."""
    from cryounet.io.coordinates import list_coordinate_files, read_coordinates
    from cryounet.io.picks_folder import check_picks_folder, check_stems

    check_picks_folder(picks)
    files = list_coordinate_files(picks)
    if not files:
        raise CryoUNetError(f"{picks}: no pick files")
    check_stems(list(files.values()))
    return {stem: (path, read_coordinates(path)) for stem, path in files.items()}


def resolve_threshold(request: PostprocessRequest, read: dict) -> float | None:
    """The score threshold to apply: the request's number, or the label-free rule's."""
    from cryounet.io.picks_folder import read_pick_record
    from cryounet.postprocess.threshold_rules import MAX_CANDIDATE_FLOOR, otsu_threshold

    if not isinstance(request.threshold, str):
        return request.threshold
    scored = [picks.scores for _, picks in read.values() if picks.scores is not None]
    if not scored:
        raise CryoUNetError(f"{request.picks}: the picks have no scores; --threshold {request.threshold} "
                            "reads the threshold from them: give a number")
    record = read_pick_record(request.picks)
    if record is not None and record.threshold is not None and record.threshold > MAX_CANDIDATE_FLOOR:
        logger.warning("%s was picked at threshold %g: the threshold from the scores needs the low-scoring "
                       "candidates too (pick with --threshold 0.0025)", request.picks, record.threshold)
    return otsu_threshold(scored)


def postprocess(request: PostprocessRequest) -> dict[str, int]:
    """Filter the picks of ``request.picks`` into ``request.output``; the kept count per micrograph."""
    from cryounet.io.coordinates import INDEX_NAME, read_star_index
    from cryounet.io.micrographs import expand_micrographs
    from cryounet.io.mrc import micrograph_shape
    from cryounet.io.outputs import claim_output_folder, input_paths
    from cryounet.io.picks_folder import (PICK_PATTERNS, pick_names, postprocessed_record, read_pick_record,
                                          warn_if_empty, write_picks)

    if request.output.resolve() == request.picks.resolve():
        raise CryoUNetError("--output must differ from --picks (the input files would be overwritten)")
    read = read_folder(request.picks)
    mics = {p.stem: p for p in expand_micrographs(request.micrographs)} if request.micrographs else {}
    if not mics and request.edge_distance > 0:
        raise CryoUNetError("--edge-distance needs --micrographs (for the micrograph sizes)")
    # Micrograph names for the output index: --micrographs, else the input folder's index.
    index_file = request.picks / INDEX_NAME
    index = read_star_index(index_file) if index_file.is_file() else {}
    cfg = FilterConfig(resolve_threshold(request, read), request.nms_distance, request.edge_distance,
                       request.max_per_micrograph)
    results, picked = [], {}
    for stem, (path, picks) in read.items():
        mic = mics.get(stem)
        if request.edge_distance > 0 and mic is None:
            raise CryoUNetError(f"{path}: no micrograph named {stem} among --micrographs")
        kept = filter_picks(picks, micrograph_shape(mic) if mic is not None else None, cfg)
        results.append((stem, str(mic) if mic is not None else index.get(path.stem, f"{stem}.mrc"), kept))
        picked[stem] = len(kept)
    folder = claim_output_folder(request.output, "postprocess", overwrite=request.overwrite, patterns=PICK_PATTERNS,
                                 writes=pick_names([Path(f"{stem}.star") for stem in read]),
                                 inputs=input_paths(request.picks, request.micrographs, list(mics.values())))
    filters = {**dataclasses.asdict(cfg), **({"threshold_rule": request.threshold}
                                             if isinstance(request.threshold, str) else {})}
    write_picks(request.output, results, postprocessed_record(read_pick_record(request.picks), filters, len(results)))
    folder.complete()
    warn_if_empty(picked)
    logger.info("kept %d of %d picks on %d micrograph(s); STAR files in %s", sum(picked.values()),
                sum(len(p) for _, p in read.values()), len(read), request.output)
    return picked
