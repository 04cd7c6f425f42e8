"""Pure conversion helpers between Scipion objects and the engine's files.

Nothing in this module imports Scipion: the functions take and return plain Python/numpy values,
so they are unit-tested without a project (``cryounet_plugin/tests/test_convert.py``). The
protocols do the Scipion side (iterating sets, creating Coordinates) and call these helpers.

File formats are the engine's: the plugin reads and writes coordinate files, MRC headers and
atomic files with ``cryounet.io`` (same distribution; those modules import only numpy, mrcfile
and starfile, never torch or Scipion). Only what the engine has no function for lives here.

Coordinate convention (same as the engine and RELION): ``x`` is the column and ``y`` the row of a
micrograph, in pixels of that micrograph, origin at the first pixel. Scipion ``Coordinate``
positions use the same numbers (they are integers, so picks are rounded to the nearest pixel).
"""
import glob
import json
import math
import os
import re
import struct
from collections import Counter

import numpy as np
from cryounet.io.atomic import write_text_atomic
from cryounet.io.coordinates import COORDINATE_SUFFIXES
from cryounet.io.mrc import REAL_MODES
from mrcfile.utils import dtype_from_mode

from .constants import (BOX_FACTOR, COORDS_INDEX, ENGINE_SECTIONS, KNOWN_SCORE_ATTRS,
                        MODEL_CONFIG, MODEL_CURVE, MODEL_FORMAT, MODEL_HISTORY,
                        MODEL_REQUIRED_FILES, REFINE_HISTORY, SAMPLING_TOLERANCE, SPREAD_ATTR,
                        UNIT_ANGSTROM, UNIT_PIXELS)


# =========================================================================== JSON files
def readJson(path, what="JSON file"):
    """Read a JSON file, raising ValueError with the file name when it is missing or invalid."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ValueError("%s %s does not exist" % (what, path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("%s %s is not valid JSON (%s)" % (what, path, exc)) from None


# =========================================================================== coordinate files
def findCoordinateFiles(folder, pattern="*"):
    """Coordinate files in ``folder`` (matching a glob ``pattern``), keyed by file stem.

    Raises:
        ValueError: when several files share a stem (e.g. ``a.star`` and ``a.box``).
    """
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, pattern))):
        stem, suffix = os.path.splitext(os.path.basename(path))
        if suffix.lower() not in COORDINATE_SUFFIXES or stem == os.path.splitext(COORDS_INDEX)[0]:
            continue
        if stem in found:
            raise ValueError("several coordinate files for micrograph '%s': %s, %s"
                             % (stem, os.path.basename(found[stem]), os.path.basename(path)))
        found[stem] = path
    return found


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


# =========================================================================== model folders
def checkModelFolder(folder):
    """Problems that make ``folder`` unusable as a CryoUNet model (empty list when fine)."""
    if not folder or not os.path.isdir(folder):
        return ["model folder %s does not exist" % folder]
    errors = ["model folder %s has no %s" % (folder, name)
              for name in MODEL_REQUIRED_FILES if not os.path.isfile(os.path.join(folder, name))]
    if not errors:
        try:
            readModelInfo(folder)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def readModelInfo(folder):
    """Summary of a model folder's ``config.json``.

    Returns:
        dict with ``diameter`` (px), ``threshold``, ``threshold_tta`` (calibrated with test-time
        augmentation), ``architecture``, ``precision``, ``recall``, ``f1``, ``ap`` (None when
        unknown) and ``version`` (engine version string).

    Raises:
        ValueError: missing/invalid ``config.json`` or not a CryoUNet model.
    """
    path = os.path.join(folder, MODEL_CONFIG)
    cfg = readJson(path, "model configuration")
    if not isinstance(cfg, dict) or cfg.get("format") != MODEL_FORMAT:
        raise ValueError("%s is not a CryoUNet model configuration (format %r, expected %r)"
                         % (path, cfg.get("format") if isinstance(cfg, dict) else None,
                            MODEL_FORMAT))
    try:
        diameter = float(cfg["diameter_px"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("%s has no valid diameter_px" % path) from None
    if not diameter > 0:
        raise ValueError("%s: diameter_px must be positive, got %s" % (path, diameter))
    valid = cfg.get("validation") or {}
    engineCfg = cfg.get("config") or {}

    def number(value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    return {
        "diameter": diameter,
        "threshold": number(cfg.get("threshold")),
        "threshold_tta": number(cfg.get("threshold_tta")),
        "architecture": (engineCfg.get("model") or {}).get("architecture"),
        "precision": number(valid.get("precision")),
        "recall": number(valid.get("recall")),
        "f1": number(valid.get("f1")),
        "ap": number(valid.get("ap")),
        "version": str(cfg.get("cryounet_version", "")),
    }


def readHistory(folder):
    """Per-epoch training history (list of dicts) of a model folder, or [] when absent."""
    path = os.path.join(folder, MODEL_HISTORY)
    if not os.path.exists(path):
        return []
    data = readJson(path, "training history")
    if not isinstance(data, list):
        raise ValueError("%s should hold a list of per-epoch records" % path)
    return data


def readValidationCurve(folder):
    """Validation precision-recall curve of a model folder (dict of lists), or None."""
    path = os.path.join(folder, MODEL_CURVE)
    if not os.path.exists(path):
        return None
    data = readJson(path, "validation curve")
    for key in ("thresholds", "precision", "recall"):
        if key not in data:
            raise ValueError("%s has no '%s'" % (path, key))
    return data


def readRefineHistory(folder):
    """Per-round pseudo-labelling history of a refined model folder, or [] when absent."""
    path = os.path.join(folder, REFINE_HISTORY)
    if not os.path.exists(path):
        return []
    data = readJson(path, "refinement history")
    if not isinstance(data, list):
        raise ValueError("%s should hold a list of per-round records" % path)
    return data


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


def _fmt(value):
    try:
        return "%.3f" % float(value)
    except (TypeError, ValueError):
        return str(value)


# =========================================================================== engine config
def parseExtraConfig(text):
    """Parse the free-form JSON of the "extra engine options" parameter.

    Returns:
        dict (empty for blank text).

    Raises:
        ValueError: invalid JSON, not an object of objects, or an unknown section.
    """
    text = (text or "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError("extra engine options are not valid JSON (%s)" % exc) from None
    if not isinstance(data, dict):
        raise ValueError("extra engine options must be a JSON object such as "
                         '{"train": {"patience": 5}}')
    for section, values in data.items():
        if section not in ENGINE_SECTIONS:
            raise ValueError("extra engine options: unknown section '%s' (known: %s)"
                             % (section, ", ".join(ENGINE_SECTIONS)))
        if not isinstance(values, dict):
            raise ValueError("extra engine options: section '%s' must be an object" % section)
    return data


def mergeConfig(base, extra):
    """A copy of ``base`` where the sections/keys of ``extra`` override (two levels deep)."""
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in (extra or {}).items():
        merged.setdefault(section, {}).update(values)
    return merged


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


def boxSizeFromDiameter(diameterPx, factor=BOX_FACTOR):
    """Default extraction box for a particle diameter: factor x diameter, rounded up to even."""
    size = int(math.ceil(float(diameterPx) * factor))
    return size + (size % 2)


def samePixelSize(a, b, tolerance=SAMPLING_TOLERANCE):
    """True when two sampling rates agree within ``tolerance`` (relative) or either is unknown."""
    if not a or not b or a <= 0 or b <= 0:
        return True
    return abs(a - b) <= tolerance * max(a, b)


def nmsFraction(distancePx, diameterPx):
    """The engine's ``pick.nms_radius`` (fraction of the diameter) for a distance in pixels."""
    return float(distancePx) / float(diameterPx)


# =========================================================================== micrographs
#: Bytes per pixel of the real-valued MRC modes the engine reads (``cryounet.io.mrc``).
_MRC_MODES = {mode: dtype_from_mode(mode).itemsize for mode in REAL_MODES}


def checkMrcHeader(path):
    """Cheap sanity check of an MRC micrograph's header and size, reading no image data.

    Kept beside ``cryounet.io.mrc`` (which checks the same when the engine reads a micrograph)
    for its specific messages, which protocols show after the file name ("<file> is truncated
    (N bytes, M expected ...)"); ``micrograph_shape`` says "MRC header is invalid or the file is
    truncated (no data)" or passes on mrcfile's words ("negative count") instead.

    Returns:
        None when the file looks like a readable single 2D MRC image, else a short description of
        the problem (missing, unreadable, bad dimensions or mode, truncated data, a stack).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            header = handle.read(1024)
    except OSError as exc:
        return "cannot be read (%s)" % exc.strerror
    if len(header) < 1024:
        return "is too small to be an MRC file (%d bytes)" % size
    for endian in ("<", ">"):
        nx, ny, nz, mode = struct.unpack(endian + "4i", header[:16])
        if 0 < nx < 1 << 20 and 0 < ny < 1 << 20 and 0 < nz < 1 << 20 and 0 <= mode < 64:
            break
    else:
        return "has no valid MRC header"
    if mode not in _MRC_MODES:
        return "has MRC mode %d, not a real-valued image mode" % mode
    if nz != 1:
        return "holds %d sections (a stack or volume), not one 2D micrograph" % nz
    nsymbt = struct.unpack(endian + "i", header[92:96])[0]
    expected = 1024 + max(nsymbt, 0) + nx * ny * _MRC_MODES[mode]
    if size < expected:
        return "is truncated (%d bytes, %d expected for %d x %d mode %d)" % (
            size, expected, nx, ny, mode)
    return None


def writeMicrographList(path, paths):
    """Write the ``@list`` file the engine reads: one micrograph path per line."""
    write_text_atomic(path, "".join("%s\n" % p for p in paths))


def linkFile(source, target):
    """Symlink ``target`` -> absolute ``source`` (replacing an existing link)."""
    source = os.path.abspath(source)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    if os.path.lexists(target):
        if os.path.islink(target) and os.path.realpath(target) == os.path.realpath(source):
            return target
        os.remove(target)
    os.symlink(source, target)
    return target


# =========================================================================== scores
def otsuThreshold(scores, bins=64):
    """Threshold splitting a score distribution into two classes (Otsu's method).

    Picking scores are bimodal (background candidates near the low end, particles near 1); the
    threshold maximising the between-class variance separates them.

    Returns:
        The threshold, or None with fewer than two distinct scores.
    """
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    if scores.size < 2 or scores.min() == scores.max():
        return None
    hist, edges = np.histogram(scores, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    weights = hist.astype(float) / hist.sum()
    w0 = np.cumsum(weights)
    w1 = 1.0 - w0
    mu = np.cumsum(weights * centres)
    muTotal = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (muTotal * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    k = int(np.argmax(between))
    return float(edges[k + 1])


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
