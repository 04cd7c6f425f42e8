"""Re-threshold and filter picked coordinates (cheap, CPU only)."""
import os

import pyworkflow.protocol.params as params
from pyworkflow.object import Float, Integer
from pyworkflow.protocol.constants import LEVEL_ADVANCED
from pwem.objects import Coordinate
from pwem.protocols import EMProtocol
from pwem.protocols.protocol_particles_picking import ProtParticlePickingOutput

from .. import engine
from ..constants import CMD_POSTPROCESS, COORDS_FOLDER, INPUT_PICKS_FOLDER, SPREAD_ATTR
from ..convert import chooseScoreAttribute, roundPosition, uniqueStems
from .protocol_base import CryoUnetProtBase
from .sets import (coordinateGroups, diameterFromBoxSize, listSome, micrographItems,
                  writeCoordinateFiles)

#: Coordinate attributes that are never scores.
_NOT_SCORES = ("_x", "_y", "_micId", "_micName", "_micrographPointer")


class CryoUnetProtPostprocess(CryoUnetProtBase, EMProtocol):
    """Filter a set of picked coordinates: re-threshold their score, enforce a minimum distance
    between picks, drop picks near the micrograph edges and cap the number per micrograph.

    Works on CryoUNet picks or any picker's coordinates with a numeric score attribute
    (Topaz, crYOLO, imported RELION autopick files...). It needs no GPU and runs in seconds, so
    iterate on it: run it, check the picks and the score histogram, change a value, run again.
    Writes a new coordinate set and RELION STAR files (extra/coordinates).
    """
    _label = "CryoUNet post-process picks"
    _possibleOutputs = ProtParticlePickingOutput

    # ================================================================== DEFINE params
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputCoordinates", params.PointerParam, pointerClass="SetOfCoordinates",
                      important=True, label="Input coordinates",
                      help="Picked coordinates with a score per particle (CryoUNet's pick "
                           "output, or another picker's).")
        form.addParam("scoreAttribute", params.StringParam, default="",
                      label="Score attribute",
                      help="Name of the coordinate attribute holding the score, e.g. "
                           "_cryounetScore, _topazScore, _cryoloScore. Empty = automatic: "
                           "the first known score attribute found on the coordinates.")
        form.addParam("particleDiameter", params.FloatParam, default=0,
                      validators=[params.GE(0)],
                      label="Particle diameter (px)",
                      help="Particle diameter in pixels of the micrographs; the engine's "
                           "filters use it for their defaults. 0 = the box size of the input "
                           "coordinates divided by %g (CryoUNet's box convention)." % engine.BOX_FACTOR)

        form.addSection(label="Filters")
        form.addParam("applyThreshold", params.BooleanParam, default=False,
                      label="Re-threshold scores?",
                      help="No (default): keep the threshold the picks were made at: this filter "
                           "keeps every input pick (CryoUNet picks are cut at their models' "
                           "calibrated threshold; the summary says which). Yes: keep only the "
                           "picks whose score reaches the threshold below.")
        form.addParam("threshold", params.FloatParam, allowsNull=True,
                      condition="applyThreshold",
                      label="Score threshold",
                      help="Lowest score kept, on the picker's scale (CryoUNet: probability "
                           "0-1; Topaz: log-likelihood). The wizard suggests a value and says "
                           "why: for CryoUNet picks the threshold they were made at and what a "
                           "higher one keeps; for other pickers the valley of the score "
                           "histogram. A value below the picks' own threshold removes nothing.")
        form.addParam("nmsDistance", params.FloatParam, default=0, validators=[params.GE(0)],
                      label="Minimum distance (px)",
                      help="Of two picks closer than this (pixels), only the higher-scoring one "
                           "is kept. 0 = no extra distance filter.")
        form.addParam("edgeDistance", params.FloatParam, default=0, validators=[params.GE(0)],
                      label="Distance to edge (px)",
                      help="Picks whose centre is closer than this to a micrograph edge are "
                           "dropped (e.g. half the extraction box, so every box fits). "
                           "0 = keep all.")
        form.addParam("maxPerMicrograph", params.IntParam, default=0, validators=[params.GE(0)],
                      label="Max particles per micrograph",
                      help="Keep at most this many picks per micrograph, the best-scoring "
                           "ones. 0 = no limit.")
        form.addParam("boxSize", params.IntParam, default=0, validators=[params.GE(0)],
                      expertLevel=LEVEL_ADVANCED, label="Box size (px)",
                      help="Box size of the output coordinates. 0 = that of the input.")

    # ================================================================== INSERT steps
    def _insertAllSteps(self):
        convertId = self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        filterId = self._insertFunctionStep(self.postprocessStep, prerequisites=[convertId],
                                            needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, prerequisites=[filterId],
                                 needsGPU=False)

    # ================================================================== STEPS
    def convertInputStep(self):
        coordSet = self.inputCoordinates.get()
        scoreAttr = self._getScoreAttribute()
        if scoreAttr is None and self._needsScores():
            raise ValueError("The input coordinates have no score attribute; only the edge "
                             "filter can be used on them.")
        spreadAttr = SPREAD_ATTR if self._hasAttribute(SPREAD_ATTR) else None
        groups = coordinateGroups(coordSet, scoreAttr, spreadAttr)
        micSet = coordSet.getMicrographs()
        items = [item for item in micrographItems(micSet) if item[0] in groups]
        missing = [mid for mid in groups if mid not in {i[0] for i in items}]
        if missing:
            raise ValueError("%d micrograph(s) of the coordinates are not in their micrograph "
                             "set %s (ids %s)." % (len(missing), micSet.getNameId(),
                                                   listSome(missing)))
        stems = uniqueStems((mid, fn) for mid, fn, _ in items)
        listPath, _ = self._linkMicrographs(items, stems, "postprocess")
        for micId, _, _ in items:
            group = groups[micId]
            for attr, key in ((scoreAttr, "scores"), (spreadAttr, "spread")):
                if attr and any(v is None for v in group[key]):
                    raise ValueError("Some coordinates of micrograph %s have no %s value."
                                     % (group["name"], attr))
        writeCoordinateFiles(
            self._getExtraPath(INPUT_PICKS_FOLDER),
            {stems[micId]: groups[micId]["xy"] for micId, _, _ in items},
            {stems[micId]: groups[micId]["scores"] for micId, _, _ in items} if scoreAttr else None,
            {stems[micId]: groups[micId]["spread"] for micId, _, _ in items} if spreadAttr else None)
        self._saveInputsInfo({"micrographs_list": listPath, "stems": {str(k): v for k, v in
                                                                      stems.items()},
                              "score_attribute": scoreAttr, "spread_attribute": spreadAttr,
                              "input_particles": coordSet.getSize(),
                              "micrographs": len(items)})

    def postprocessStep(self):
        info = self._loadInputsInfo()
        args = ["--picks", os.path.abspath(self._getExtraPath(INPUT_PICKS_FOLDER)),
                "--output", os.path.abspath(self._getExtraPath(COORDS_FOLDER)), "--overwrite",
                "--diameter", "%.3f" % self._getDiameterPx(),
                "--micrographs", "@" + os.path.abspath(info["micrographs_list"])]
        if self.applyThreshold.get():
            args += ["--threshold", "%.6f" % self.threshold.get()]  # else the picks' own
        if self.nmsDistance.get():
            args += ["--nms-distance", "%.3f" % self.nmsDistance.get()]
        if self.edgeDistance.get():
            args += ["--edge-distance", "%.3f" % self.edgeDistance.get()]
        if self.maxPerMicrograph.get():
            args += ["--max-per-micrograph", str(self.maxPerMicrograph.get())]
        self._runEngine(CMD_POSTPROCESS, args, "postprocess")

    def createOutputStep(self):
        info = self._loadInputsInfo()
        coordSet = self.inputCoordinates.get()
        micSet = coordSet.getMicrographs()
        scoreAttr = info.get("score_attribute")
        spreadAttr = info.get("spread_attribute")
        stems = {int(k): v for k, v in info["stems"].items()}
        outDir = self._getExtraPath(COORDS_FOLDER)
        missing = [stem for stem in stems.values()
                   if not os.path.exists(os.path.join(outDir, stem + ".star"))]
        if missing:
            raise RuntimeError("cryounet postprocess wrote no STAR file for %d micrograph(s): %s"
                               % (len(missing), listSome(missing)))
        output = self._createSetOfCoordinates(micSet)
        output.setBoxSize(self.boxSize.get() or coordSet.getBoxSize())
        entries = []
        for mic in micSet.iterItems():
            stem = stems.get(mic.getObjId())
            if stem is None:
                continue
            path = os.path.join(outDir, stem + ".star")
            picks = engine.readCoordinates(path)
            scores, spread = picks.scores, picks.uncertainty
            entries.append((mic.getFileName(), path))
            for i, (x, y) in enumerate(picks.xy):
                coord = Coordinate()
                coord.setMicrograph(mic)
                coord.setPosition(*roundPosition(x, y))
                if scoreAttr and scores is not None:
                    setattr(coord, scoreAttr, Float(float(scores[i])))
                if spreadAttr and spread is not None:
                    setattr(coord, spreadAttr, Float(float(spread[i])))
                output.append(coord)
        engine.writeStarIndex(os.path.join(outDir, engine.COORDS_INDEX), entries)
        self._defineOutputs(outputCoordinates=output)
        self._defineSourceRelation(self.inputCoordinates, output)

    # ================================================================== INFO
    def _validate(self):
        errors = []
        coordSet = self.inputCoordinates.get()
        if coordSet is None:
            return errors
        if coordSet.getSize() == 0:
            errors.append("The input coordinates are empty.")
            return errors
        try:
            scoreAttr = self._getScoreAttribute()
        except ValueError as exc:
            return [str(exc)]
        if scoreAttr is None and self._needsScores():
            errors.append("The input coordinates have no numeric score attribute: only the "
                          "edge filter can be applied (turn off the threshold, minimum "
                          "distance and maximum per micrograph).")
        if not self._getDiameterPx():
            errors.append("Set the particle diameter: the input coordinates have no box size.")
        if self.applyThreshold.get() and self.threshold.get() is None:
            errors.append("Set the score threshold (its wizard suggests one), or set 'Re-threshold "
                          "scores?' to No to keep the threshold the picks were made at.")
        return errors

    def _warnings(self):
        warnings = []
        if not (self.applyThreshold.get() or self.nmsDistance.get() or self.edgeDistance.get()
                or self.maxPerMicrograph.get()):
            warnings.append("No filter is enabled: the output will equal the input.")
        own, _ = self.getOwnThreshold()
        if self.applyThreshold.get() and None not in (own, self.threshold.get()) \
                and self.threshold.get() < own:
            warnings.append("Score threshold %g is below %.3f, the threshold these picks were made "
                            "at: it removes nothing. To get more picks, pick again with a lower "
                            "threshold." % (self.threshold.get(), own))
        return warnings

    def _summary(self):
        summary = []
        info = self._loadInputsInfo()
        filters = [self._thresholdText()]
        if self.nmsDistance.get():
            filters.append("minimum distance %g px" % self.nmsDistance.get())
        if self.edgeDistance.get():
            filters.append("distance to edge >= %g px" % self.edgeDistance.get())
        if self.maxPerMicrograph.get():
            filters.append("at most %d per micrograph" % self.maxPerMicrograph.get())
        summary.append("Filters: %s." % (", ".join(filters) or "none"))
        if info.get("score_attribute"):
            summary.append("Score attribute: %s." % info["score_attribute"])
        output = getattr(self, "outputCoordinates", None)
        if output is None:
            summary.append("Output coordinates not ready yet.")
        else:
            summary.append("Kept %d of %d particles on %d micrographs (box size %s px)."
                           % (output.getSize(), info.get("input_particles", 0),
                              info.get("micrographs", 0), output.getBoxSize()))
            summary.append("RELION STAR files: %s" % self._getExtraPath(COORDS_FOLDER))
        return summary

    def _methods(self):
        output = getattr(self, "outputCoordinates", None)
        if output is None:
            return ["Output coordinates not ready yet."]
        return ["The picks were filtered (%s), keeping %d of %d particles."
                % ("; ".join(self._summary()[0:1]), output.getSize(),
                   self._loadInputsInfo().get("input_particles", 0))]

    def _citations(self):
        return []

    # ================================================================== UTILS
    def getOwnThreshold(self):
        """``(threshold, what set it)`` of the input picks, or ``(None, None)`` when unknown: the
        threshold of the CryoUNet pick run that made them (its form's, else its models' calibrated
        one), or the re-threshold of the post-process run that filtered them (else its input's)."""
        producer = self.inputCoordinates.getObjValue()
        try:
            if isinstance(producer, CryoUnetProtPostprocess):
                if producer.applyThreshold.get() and producer.threshold.get() is not None:
                    return producer.threshold.get(), "re-thresholded by run '%s'" % producer.getRunName()
                return producer.getOwnThreshold()
            if hasattr(producer, "getPickingThreshold"):
                how = ("the lowest of its batches' thresholds read from the scores"
                       if producer.thresholdFromScores.get()
                       else "calibrated at training for the best F1" if producer._explicitThreshold() is None
                       else "set on its form")
                return producer.getPickingThreshold(), "pick run '%s', %s" % (producer.getRunName(), how)
        except (ValueError, AttributeError):
            pass
        return None, None

    def _thresholdText(self):
        if self.applyThreshold.get():
            return "score >= %g" % self.threshold.get()
        own, source = self.getOwnThreshold()
        return ("score >= the picks' own threshold (%.3f, %s)" % (own, source) if own is not None
                else "score >= the picks' own threshold")

    def _needsScores(self):
        return bool(self.applyThreshold.get() or self.nmsDistance.get()
                    or self.maxPerMicrograph.get())

    def _numericAttributes(self):
        coordSet = self.inputCoordinates.get()
        first = coordSet.getFirstItem() if coordSet is not None else None
        if first is None:
            return []
        return [name for name, value in first.getAttributes()
                if name not in _NOT_SCORES and isinstance(value, (Float, Integer))]

    def _hasAttribute(self, name):
        return name in self._numericAttributes()

    def _getScoreAttribute(self):
        return chooseScoreAttribute(self._numericAttributes(), self.scoreAttribute.get())

    def _getDiameterPx(self):
        if self.particleDiameter.get():
            return self.particleDiameter.get()
        coordSet = self.inputCoordinates.get()
        return diameterFromBoxSize(coordSet.getBoxSize() if coordSet is not None else None)

    def getScores(self):
        """Scores of the input coordinates (for the threshold wizard and the histogram)."""
        scoreAttr = self._getScoreAttribute()
        if scoreAttr is None:
            return []
        return [getattr(c, scoreAttr).get() for c in self.inputCoordinates.get().iterItems()]
