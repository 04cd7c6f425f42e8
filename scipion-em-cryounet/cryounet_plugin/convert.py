"""Scipion-side conversion helpers: micrograph names and stems, matching coordinates to
micrographs, units, pick scores and summaries.

Nothing in this module imports Scipion or the engine: the functions take and return plain
Python/numpy values, so they are unit-tested without a project
(``cryounet_plugin/tests/test_convert.py``). Engine rules (file names, suffixes, the box and
threshold rules, file formats) are the engine's, in :mod:`cryounet_plugin.engine`.

Coordinate convention (same as the engine and RELION): ``x`` is the column and ``y`` the row of a
micrograph, in pixels of that micrograph, origin at the first pixel. Scipion ``Coordinate``
positions use the same numbers (they are integers, so picks are rounded to the nearest pixel).
"""
import math
import os
import re
from collections import Counter


from .constants import KNOWN_SCORE_ATTRS, SAMPLING_TOLERANCE, SPREAD_ATTR, UNIT_ANGSTROM, UNIT_PIXELS
from .engine import COORDS_INDEX


# =========================================================================== naming
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
#: Stems that would clash with files the engine writes next to the per-micrograph STAR files.
RESERVED_STEMS = (os.path.splitext(COORDS_INDEX)[0],)


def micrographStem(path):
    """File stem of a micrograph without its extension, made safe for file names."""
    base = os.path.basename(str(path))
    stem = os.path.splitext(base)[0] if "." in base else base
    stem = _UNSAFE.sub("_", stem)
    return stem or "micrograph"


def uniqueStems(items, taken=()):
    """Give each micrograph a unique file stem.

    Args:
        items: iterable of ``(key, path)`` (key: the Scipion micrograph id).
        taken: stems already used by other micrographs (never given again).

    Returns:
        dict key -> stem. A micrograph keeps its own stem unless another item shares it, it is
        taken or reserved; then ``<stem>_<key>`` is used (with a counter if still not unique).
    """
    items = list(items)
    stems = {key: micrographStem(path) for key, path in items}
    counts = Counter(stems.values())
    used = set(taken)
    result = {}
    for key, _ in items:
        stem = stems[key]
        if counts[stem] > 1 or stem in used or stem in RESERVED_STEMS:
            candidate = "%s_%s" % (stem, key)
            n = 2
            while candidate in used or candidate in counts and candidate != stem:
                candidate = "%s_%s_%d" % (stem, key, n)
                n += 1
            stem = candidate
        used.add(stem)
        result[key] = stem
    return result


def matchMicrographs(micNames, coordGroups):
    """Match the micrographs referenced by coordinates to those of a micrograph set.

    Coordinates refer to micrographs by id, but ids are only meaningful within one lineage of
    sets (two separate imports both start at 1). A coordinate micrograph therefore matches the
    micrograph with the same id when their names agree (or a name is unknown); otherwise it is
    matched by name (coordinates picked on another set of the same micrographs).

    Args:
        micNames: dict micrograph id -> micName of the micrograph set.
        coordGroups: dict micrograph id referenced by the coordinates -> that micrograph's name.

    Returns:
        (mapping, byName): ``mapping`` coordinate micId -> micrograph id (only matched ones);
        ``byName`` True when at least one match used the name.
    """
    nameToId = {}
    for mid, name in micNames.items():
        if name:
            nameToId.setdefault(name, mid)
    mapping = {}
    byName = False
    for cid, name in coordGroups.items():
        if cid in micNames and (not name or not micNames[cid] or name == micNames[cid]):
            mapping[cid] = cid
        elif name and name in nameToId:
            mapping[cid] = nameToId[name]
            byName = True
    return mapping, byName


# =========================================================================== summaries
def formatRefineHistory(history):
    """One line per self-training round, for summaries (round 0 is the input model)."""
    lines = []
    for item in history:
        f1 = item.get("valid_f1")
        f1Text = "" if f1 is None else "validation F1 %.3f" % float(f1)
        if not item.get("round"):
            lines.append("Round 0 (input model): %s" % (f1Text or "not evaluated"))
            continue
        lines.append("Round %s: %s pseudo-labelled particles on %s micrographs "
                     "(positive threshold %s, negative threshold %s)%s"
                     % (item.get("round"), item.get("pseudo_positives"),
                        item.get("micrographs_used"), _fmt(item.get("positive_threshold")),
                        _fmt(item.get("negative_threshold")),
                        ", " + f1Text if f1Text else ""))
    return lines


#: Validation metrics of a model folder's config.json and their names in its history.json.
_KEPT_KEYS = (("f1", "valid_f1"), ("ap", "valid_ap"), ("precision", "valid_precision"),
              ("recall", "valid_recall"))


def keptEpoch(history, validation):
    """Number of the epoch whose weights a model folder kept: the last ``history.json`` record
    with the validation metrics its ``config.json`` holds (None when none has them)."""
    def same(a, b):
        return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-9

    for item in reversed(history):
        if all(same(validation.get(key), item.get(name)) for key, name in _KEPT_KEYS):
            return item.get("epoch")
    return None


def trainingEpochsText(history, validation, maxEpochs, mainEpochs=None):
    """'Epochs: N run of at most M; kept epoch K (validation F1 ...)' for a training summary.

    Args:
        history: the model folder's ``history.json`` records (one per epoch run).
        validation: its ``config.json`` validation metrics (``f1``, ``ap``, ...).
        maxEpochs: the most epochs the run could train.
        mainEpochs: the kept epoch recorded by a run with calibration folds (their cross-fitted
            metrics replace the kept epoch's), else None.
    """
    text = "Epochs: %d run of at most %d" % (len(history), maxEpochs)
    if len(history) < maxEpochs:
        text += " (stopped early)"
    kept = mainEpochs or keptEpoch(history, validation)
    record = next((item for item in history if item.get("epoch") == kept), None)
    if record is None:
        return text + "; the kept epoch is not recorded."
    return text + "; kept the weights of epoch %d (validation F1 %s)." % (kept, _fmt(record.get("valid_f1")))


def _fmt(value):
    try:
        return "%.3f" % float(value)
    except (TypeError, ValueError):
        return str(value)


# =========================================================================== sizes
def diameterInPixels(value, unit, samplingRate):
    """A diameter given in ``unit`` (UNIT_PIXELS or UNIT_ANGSTROM) as pixels of micrographs
    sampled at ``samplingRate`` (Angstrom/pixel)."""
    if unit == UNIT_PIXELS:
        return float(value)
    if unit == UNIT_ANGSTROM:
        if not samplingRate or samplingRate <= 0:
            raise ValueError("a diameter in Angstrom needs the micrographs' sampling rate")
        return float(value) / float(samplingRate)
    raise ValueError("unknown diameter unit %r" % (unit,))


def samePixelSize(a, b, tolerance=SAMPLING_TOLERANCE):
    """True when two sampling rates agree within ``tolerance`` (relative) or either is unknown."""
    if not a or not b or a <= 0 or b <= 0:
        return True
    return abs(a - b) <= tolerance * max(a, b)


def nmsFraction(distancePx, diameterPx):
    """The engine's ``pick.nms_radius`` (fraction of the diameter) for a distance in pixels."""
    return float(distancePx) / float(diameterPx)


# =========================================================================== scores
def chooseScoreAttribute(available, requested=""):
    """Pick the coordinate attribute holding the picking score.

    Args:
        available: names of the numeric attributes of the coordinates (e.g. ``_cryounetScore``).
        requested: the user's choice ("" = automatic), with or without the leading underscore.

    Returns:
        The attribute name, or None when the coordinates have no candidate.

    Raises:
        ValueError: the requested attribute is missing, or several unknown candidates exist.
    """
    available = list(available)
    requested = (requested or "").strip()
    if requested:
        name = requested if requested.startswith("_") else "_" + requested
        if name not in available:
            raise ValueError("the coordinates have no attribute %s (numeric attributes: %s)"
                             % (name, ", ".join(available) or "none"))
        return name
    for known in KNOWN_SCORE_ATTRS:
        if known in available:
            return known
    candidates = [a for a in available if a != SPREAD_ATTR]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError("several attributes could be the score (%s): name one in 'Score attribute'"
                     % ", ".join(candidates))


def roundPosition(x, y):
    """Scipion coordinates are integer pixels: round to the nearest one."""
    return int(math.floor(float(x) + 0.5)), int(math.floor(float(y) + 0.5))
