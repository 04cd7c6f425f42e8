"""Pure conversion helpers between Scipion objects and the engine's files.

Nothing in this module imports Scipion: the functions take and return plain Python/numpy values,
so they are unit-tested without a project (``cryounet_plugin/tests/test_convert.py``). The
protocols do the Scipion side (iterating sets, creating Coordinates) and call these helpers.

Coordinate convention (same as the engine and RELION): ``x`` is the column and ``y`` the row of a
micrograph, in pixels of that micrograph, origin at the first pixel. Scipion ``Coordinate``
positions use the same numbers (they are integers, so picks are rounded to the nearest pixel).
"""
import json
import math
import os
import re
import shlex
import struct
import tempfile
from collections import Counter, OrderedDict

import numpy as np

from .constants import (BOX_FACTOR, COORDS_INDEX, COORDS_INDEX_BLOCK, ENGINE_SECTIONS,
                        KNOWN_SCORE_ATTRS, SPREAD_ATTR,
                        MODEL_CONFIG, MODEL_CURVE, MODEL_FORMAT, MODEL_HISTORY,
                        MODEL_REQUIRED_FILES, REFINE_HISTORY, SAMPLING_TOLERANCE, STAR_CLASS,
                        STAR_FOM, STAR_MIC_COORDS, STAR_MIC_NAME, STAR_PSI, STAR_SPREAD, STAR_X,
                        STAR_Y, UNIT_ANGSTROM, UNIT_PIXELS)

COORDINATE_SUFFIXES = (".star", ".box", ".csv", ".txt", ".coords")


# =========================================================================== atomic writes
def writeTextAtomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def writeJson(path, data):
    writeTextAtomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def readJson(path, what="JSON file"):
    """Read a JSON file, raising ValueError with the file name when it is missing or invalid."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ValueError("%s %s does not exist" % (what, path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("%s %s is not valid JSON (%s)" % (what, path, exc)) from None


# =========================================================================== STAR files
class StarLoop:
    """One loop of a STAR file: ``labels`` (without the leading underscore) and string rows."""

    def __init__(self, labels, rows):
        self.labels = labels  # the parser fills these lists in place
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def column(self, label, dtype=float):
        index = self.labels.index(label)
        return np.array([dtype(row[index]) for row in self.rows])

    def has(self, *labels):
        return all(label in self.labels for label in labels)


def _splitStarLine(line):
    if '"' in line or "'" in line:
        return shlex.split(line)
    return line.split()


def readStar(path):
    """Parse the loops of a STAR file.

    Returns:
        OrderedDict block name -> StarLoop, for every ``data_`` block holding a loop (simple
        key/value blocks are skipped). A loop with a header and no rows is an empty StarLoop.

    Raises:
        ValueError: a row whose number of fields differs from the loop's labels.
    """
    blocks = OrderedDict()
    block = None
    labels = None
    rows = None
    inLabels = False
    with open(path) as handle:
        for lineno, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("data_"):
                block = line[len("data_"):]
                labels, rows, inLabels = None, None, False
                continue
            if line.startswith("loop_"):
                labels, rows, inLabels = [], [], True
                blocks[block if block is not None else ""] = StarLoop(labels, rows)
                continue
            if line.startswith("_"):
                if inLabels and labels is not None:
                    labels.append(line.split()[0][1:])
                # a key/value pair of a simple block: ignored
                continue
            if labels is None:
                continue
            inLabels = False
            fields = _splitStarLine(line)
            if len(fields) != len(labels):
                raise ValueError("%s: line %d has %d fields for %d labels"
                                 % (path, lineno, len(fields), len(labels)))
            rows.append(fields)
    return blocks


def findCoordinateLoop(blocks):
    """The first loop holding ``_rlnCoordinateX`` and ``_rlnCoordinateY``, or None."""
    for loop in blocks.values():
        if loop.has(STAR_X, STAR_Y):
            return loop
    return None


def readStarCoordinates(path):
    """Read a RELION coordinate STAR file.

    Returns:
        (xy, scores, spread): ``xy`` an (N, 2) float array, ``scores`` the
        ``_rlnAutopickFigureOfMerit`` column or None, ``spread`` the ``_cryounetScoreSpread`` column
        or None.

    Raises:
        ValueError: the file has no coordinate loop, or unreadable numbers.
    """
    blocks = readStar(path)
    loop = findCoordinateLoop(blocks)
    if loop is None:
        with open(path) as handle:
            text = handle.read()
        if not text.strip() or ("_" + STAR_X) in text:
            return np.zeros((0, 2)), None, None
        raise ValueError("%s has no _%s/_%s loop" % (path, STAR_X, STAR_Y))
    try:
        xy = np.stack([loop.column(STAR_X), loop.column(STAR_Y)], axis=1) if len(loop) \
            else np.zeros((0, 2))
        scores = loop.column(STAR_FOM) if loop.has(STAR_FOM) else None
        spread = loop.column(STAR_SPREAD) if loop.has(STAR_SPREAD) else None
    except ValueError as exc:
        raise ValueError("%s: non-numeric coordinate value (%s)" % (path, exc)) from None
    return xy.reshape(-1, 2), scores, spread


def _formatStarLoop(block, labels, rows):
    lines = ["", "# version 50001", "", "data_%s" % block, "", "loop_"]
    lines += ["_%s #%d" % (label, i) for i, label in enumerate(labels, 1)]
    lines += ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n\n"


def writeStarCoordinates(path, xy, scores=None, spread=None):
    """Write one micrograph's coordinates as a RELION coordinate STAR file (atomic).

    Columns: X, Y (pixels), class (0), psi (-999, unknown), figure of merit (``scores`` or 1), and
    ``_cryounetScoreSpread`` when ``spread`` is given. Zero coordinates give a header-only loop.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    labels = [STAR_X, STAR_Y, STAR_CLASS, STAR_PSI, STAR_FOM]
    if spread is not None:
        labels.append(STAR_SPREAD)
    rows = []
    for i, (x, y) in enumerate(xy):
        row = ["%.2f" % x, "%.2f" % y, "0", "-999.0",
               "%.6f" % (1.0 if scores is None else float(scores[i]))]
        if spread is not None:
            row.append("%.6f" % float(spread[i]))
        rows.append(row)
    writeTextAtomic(path, _formatStarLoop("", labels, rows))


def writeStarIndex(path, entries):
    """Write the index of coordinate files: ``(micrograph path, coordinate file path)`` pairs."""
    rows = [[_starValue(mic), _starValue(coords)] for mic, coords in entries]
    writeTextAtomic(path, _formatStarLoop(COORDS_INDEX_BLOCK, [STAR_MIC_NAME, STAR_MIC_COORDS],
                                          rows))


def _starValue(text):
    text = str(text)
    return '"%s"' % text if (not text or any(c.isspace() for c in text)) else text


def readStarIndex(path):
    """Read an index written by :func:`writeStarIndex` into a list of (micrograph, coords)."""
    blocks = readStar(path)
    for loop in blocks.values():
        if loop.has(STAR_MIC_NAME, STAR_MIC_COORDS):
            i, j = loop.labels.index(STAR_MIC_NAME), loop.labels.index(STAR_MIC_COORDS)
            return [(row[i], row[j]) for row in loop.rows]
    raise ValueError("%s has no _%s/_%s loop" % (path, STAR_MIC_NAME, STAR_MIC_COORDS))


# =========================================================================== other formats
def readCoordinateFile(path):
    """Read a coordinate file by suffix: RELION STAR, EMAN BOX, or CSV/TXT ``x y [score]``.

    BOX lines hold the lower-left corner and the box size, so their centre is ``x + w / 2``.

    Returns:
        (xy, scores): an (N, 2) float array and the scores (None when the file has none).
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".star":
        xy, scores, _ = readStarCoordinates(path)
        return xy, scores
    if suffix not in COORDINATE_SUFFIXES:
        raise ValueError("%s: unknown coordinate format '%s' (use one of %s)"
                         % (path, suffix, ", ".join(COORDINATE_SUFFIXES)))
    rows = []
    with open(path) as handle:
        lines = [line.strip() for line in handle]
    delimiter = "," if any("," in line for line in lines if line) else None
    for lineno, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        fields = [f for f in (line.split(delimiter) if delimiter else line.split()) if f.strip()]
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            if not rows:
                continue  # a header line
            raise ValueError("%s: line %d is not numeric: %r" % (path, lineno, line[:60])) from None
    if not rows:
        return np.zeros((0, 2)), None
    if suffix == ".box":
        if any(len(r) < 4 for r in rows):
            raise ValueError("%s: BOX lines need 4 columns: x y width height" % path)
        arr = np.array([r[:4] for r in rows])
        return arr[:, :2] + arr[:, 2:4] / 2.0, None
    if any(len(r) < 2 for r in rows):
        raise ValueError("%s: each line needs at least two numbers: x y [score]" % path)
    scores = np.array([r[2] for r in rows]) if all(len(r) >= 3 for r in rows) else None
    return np.array([r[:2] for r in rows]), scores


def findCoordinateFiles(folder, pattern="*"):
    """Coordinate files in ``folder`` (matching a glob ``pattern``), keyed by file stem.

    Raises:
        ValueError: when several files share a stem (e.g. ``a.star`` and ``a.box``).
    """
    import glob
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
        dict with ``diameter`` (px), ``threshold``, ``architecture``, ``precision``, ``recall``,
        ``f1``, ``ap`` (None when unknown) and ``version`` (engine version string).

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
_MRC_MODES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}


def checkMrcHeader(path):
    """Cheap sanity check of an MRC micrograph's header and size.

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


def mrcShape(path):
    """(ny, nx) from an MRC header, or None when the header is not readable."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
        for endian in ("<", ">"):
            nx, ny, nz, mode = struct.unpack(endian + "4i", header)
            if 0 < nx < 1 << 20 and 0 < ny < 1 << 20:
                return ny, nx
    except (OSError, struct.error):
        pass
    return None


def writeMicrographList(path, paths):
    """Write the ``@list`` file the engine reads: one micrograph path per line."""
    writeTextAtomic(path, "".join("%s\n" % p for p in paths))


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
