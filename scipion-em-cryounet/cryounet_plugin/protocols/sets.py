"""Helpers over Scipion sets shared by the CryoUNet protocols: micrograph items and their checks,
coordinates grouped by micrograph, links and ``@list`` files for the engine, STAR files, sizes.

Functions of plain values and Scipion sets (no protocol): the protocols call them with their
inputs.
"""
import os
from collections import OrderedDict

from .. import engine
from ..convert import matchMicrographs

#: How many offending items an error message lists before "and N more".
_LIST_LIMIT = 5


def listSome(items, limit=_LIST_LIMIT):
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    if len(items) > limit:
        text += " and %d more" % (len(items) - limit)
    return text


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


def writeMicrographList(path, paths):
    """Write the ``@list`` file the engine reads: one micrograph path per line."""
    engine.writeTextAtomic(path, "".join("%s\n" % p for p in paths))


# ================================================================== micrographs
def micrographItems(micSet):
    """``[(id, file name, micName)]`` of a micrograph set, in set order."""
    return [(mic.getObjId(), mic.getFileName(), mic.getMicName()) for mic in micSet.iterItems()]


def nonMicrographFiles(items):
    """File names of the items that are not MRC micrographs by name."""
    return [fn for _, fn, _ in items if not engine.isMicrographName(fn)]


def unreadableMicrographs(items):
    """``[(file name, problem)]`` of micrographs whose name, MRC header or size is wrong."""
    found = ((fn, engine.checkMicrograph(fn)) for _, fn, _ in items)
    return [(fn, problem) for fn, problem in found if problem]


def requireReadableMicrographs(items, where):
    """Raise ValueError naming ``where`` unless every micrograph is a readable MRC file."""
    bad = unreadableMicrographs(items)
    if bad:
        raise ValueError("Unreadable micrograph(s) in %s: %s. Remove them from the set "
                         "(e.g. with a subset) and run again."
                         % (where, listSome("%s: %s" % b for b in bad)))


def nonMicrographErrors(micSet):
    """Form errors for micrographs of ``micSet`` CryoUNet cannot read by their file name."""
    names = nonMicrographFiles(micrographItems(micSet))
    if names:
        return ["CryoUNet reads MRC micrographs only (%s); these are not: %s"
                % (", ".join(engine.MICROGRAPH_SUFFIXES), listSome(names))]
    return []


def smallestMicrographSide(micSet):
    """Smallest side (px) of the first micrograph of a set, or None when unreadable."""
    first = micSet.getFirstItem()
    shape = engine.micrographShape(first.getFileName()) if first is not None else None
    return min(shape) if shape else None


# ================================================================== sizes
def diameterFromBoxSize(boxPx):
    """Particle diameter (px) implied by a coordinate box size (px): the one rule of train,
    refine and post-process, the inverse of the box the pick protocol writes."""
    return engine.diameterFromBoxSize(boxPx) if boxPx else None


def boxSizeForDiameter(diameterPx):
    """Box size (px) the pick protocol gives its coordinates for a particle diameter (px)."""
    return engine.boxSizeFromDiameter(diameterPx)


def coordinateScale(coordSet, micSet):
    """Factor from pixels of the micrographs ``coordSet`` was picked on to pixels of ``micSet``
    (1 when either sampling rate is unknown)."""
    coordMics = coordSet.getMicrographs()
    coordSampling = coordMics.getSamplingRate() if coordMics is not None else None
    micSampling = micSet.getSamplingRate()
    return coordSampling / micSampling if coordSampling and micSampling else 1.0


# ================================================================== coordinates
def writeCoordinateFiles(folder, xyByStem, scores=None, spread=None):
    """Write one RELION STAR file per micrograph stem into ``folder``.

    Args:
        xyByStem: dict stem -> ``[(x, y), ...]`` in pixels of that micrograph.
        scores, spread: optional dicts stem -> values (same order as the positions).
    Returns:
        The number of coordinates written.
    """
    os.makedirs(folder, exist_ok=True)
    for stem, xy in xyByStem.items():
        engine.writeStarPicks(os.path.join(folder, stem + ".star"), xy,
                              (scores or {}).get(stem), (spread or {}).get(stem))
    return sum(len(xy) for xy in xyByStem.values())


def coordinateGroups(coordSet, scoreAttr=None, spreadAttr=None):
    """Coordinates grouped by micrograph id.

    Returns:
        OrderedDict micId -> dict(name=micName, xy=[(x, y)], scores=[...], spread=[...])
        (scores/spread lists only filled when the attribute names are given).
    """
    groups = OrderedDict()
    for coord in coordSet.iterItems():
        group = groups.get(coord.getMicId())
        if group is None:
            group = groups[coord.getMicId()] = {"name": coord.getMicName(), "xy": [], "scores": [],
                                                "spread": []}
        group["xy"].append((coord.getX(), coord.getY()))
        for attr, key in ((scoreAttr, "scores"), (spreadAttr, "spread")):
            if attr:
                value = getattr(coord, attr, None)
                group[key].append(value.get() if value is not None else None)
    return groups


def coordinateMicrographKeys(coordSet):
    """dict micId -> micName of the micrographs referenced by a coordinate set (SQL query)."""
    values = coordSet.getUniqueValues(["_micId", "_micName"])
    return OrderedDict(zip(values["_micId"], values["_micName"]))


def matchCoordinates(items, coordKeys):
    """Match coordinate micrograph ids to a micrograph list (ids first, then names)."""
    return matchMicrographs(OrderedDict((mid, name) for mid, _, name in items), coordKeys)
