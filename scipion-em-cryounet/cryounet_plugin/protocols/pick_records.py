"""Per-micrograph records of a streaming pick run: which STAR file a micrograph got, or why it was
skipped (one JSON file per micrograph, so streaming batches never rewrite a shared file)."""
import json
import os

from .. import engine


def recordPath(folder, micId):
    return os.path.join(folder, "mic_%06d.json" % micId)


def writeRecord(folder, item, stem, coordinates=None, count=0, skipped=None):
    """Record micrograph ``item`` = ``(id, file name, micName)``: its STAR file and pick count, or
    the reason it was skipped."""
    micId, fn, name = item
    engine.writeJson(recordPath(folder, micId), {"micId": micId, "micName": name, "file": fn, "stem": stem,
                                                 "coordinates": coordinates, "count": count, "skipped": skipped})


def readRecord(folder, micId):
    """The record of a micrograph, or None when it has none (yet)."""
    try:
        with open(recordPath(folder, micId)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def allRecords(folder):
    """Every record in ``folder``, in micrograph id order."""
    if not os.path.isdir(folder):
        return []
    records = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as handle:
                    records.append(json.load(handle))
            except (OSError, ValueError):
                continue
    return records
