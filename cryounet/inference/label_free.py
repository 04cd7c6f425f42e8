"""``pick --threshold otsu``: pick every candidate, then cut the folder at the threshold read from
the candidates' scores (:mod:`cryounet.postprocess.threshold_rules`), for a model that never saw the
protein (the general model, zero-shot), whose calibrated threshold does not carry over."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cryounet.errors import CryoUNetError

logger = logging.getLogger(__name__)

#: Candidates are picked down to this probability before the rule reads its threshold (the floor
#: of Topaz's default extraction, a log-likelihood ratio of -6; the benchmarks rank down to it too).
CANDIDATE_FLOOR = 0.0025


def picking_threshold_option(text: str, shard: tuple[int, int] | None) -> tuple[float | None, str | None]:
    """``pick --threshold``: ``(threshold to pick at, label-free rule or None)``; ``auto`` or a
    number as :func:`cryounet.io.model_folder.parse_threshold` reads them, a rule's name picks
    every candidate down to :data:`CANDIDATE_FLOOR` first."""
    from cryounet.io.model_folder import parse_threshold
    from cryounet.postprocess.threshold_rules import LABEL_FREE_RULES

    rule = text.strip().lower()
    if rule not in LABEL_FREE_RULES:
        return parse_threshold(text), None
    check_rule_options(rule, shard)
    return CANDIDATE_FLOOR, rule


def check_rule_options(rule: str, shard: tuple[int, int] | None) -> None:
    """Refuse what a threshold from the scores cannot do: a shard sees only part of the scores."""
    if shard is not None:
        raise CryoUNetError(f"--threshold {rule} reads the threshold from all micrographs' scores; a shard "
                            f"sees only its part: pick the shards with --threshold {CANDIDATE_FLOOR}, merge "
                            f"them, then run cryounet postprocess --threshold {rule} on the merged folder")


def cut_at_rule(output: Path, rule: str, fallback: float) -> tuple[float, dict[str, int]]:
    """Rewrite the pick folder ``output`` (this run's own STAR files, picked down to
    :data:`CANDIDATE_FLOOR`) keeping the picks at or above the rule's threshold; its record names
    the rule and the threshold. With too few candidates for the rule (a small batch), the cut is
    at ``fallback`` (the models' own threshold), with a warning. Returns the threshold and the
    picks kept per micrograph stem."""
    from cryounet.io.coordinates import INDEX_NAME, read_coordinates, read_star_index
    from cryounet.io.picks_folder import read_pick_record, write_picks
    from cryounet.postprocess.filters import FilterConfig, filter_picks
    from cryounet.postprocess.threshold_rules import MIN_CANDIDATES, otsu_threshold

    index = read_star_index(output / INDEX_NAME)
    picks = {stem: (mic, read_coordinates(output / f"{stem}.star")) for stem, mic in index.items()}
    scores = [p.scores for _, p in picks.values() if p.scores is not None and len(p)]
    candidates = sum(len(s) for s in scores)
    if candidates < MIN_CANDIDATES:
        logger.warning("only %d candidate(s) above %g: too few to read a threshold from their scores (it needs "
                       "%d; pick more micrographs at once); cut at the models' own threshold, %.3f, instead",
                       candidates, CANDIDATE_FLOOR, MIN_CANDIDATES, fallback)
        threshold, rule = fallback, f"{rule}: too few candidates, the models' own"
    else:
        threshold = otsu_threshold(scores)
    cfg = FilterConfig(threshold=threshold)
    results = [(stem, mic, filter_picks(p, None, cfg)) for stem, (mic, p) in picks.items()]
    record = read_pick_record(output)
    if record is not None:
        record = dataclasses.replace(record, threshold=threshold,
                                     postprocess={**record.postprocess, "threshold_rule": rule,
                                                  "candidate_floor": CANDIDATE_FLOOR})
    write_picks(output, results, record)
    kept = {stem: len(p) for stem, _, p in results}
    logger.info("threshold %s: %.4f, read from %d candidates; %d kept", rule, threshold,
                sum(len(p) for _, p in picks.values()), sum(kept.values()))
    return threshold, kept
