"""Import coordinate files (RELION STAR, EMAN BOX, CSV/TXT) matched to micrographs by name."""
import os

import pyworkflow.protocol.params as params
from pyworkflow.object import Float
from pwem.objects import Coordinate
from pwem.protocols import EMProtocol
from pwem.protocols.protocol_particles_picking import ProtParticlePickingOutput

from .. import engine
from ..constants import IMPORTED_SCORE_ATTR
from ..convert import micrographStem, roundPosition
from .protocol_base import CryoUnetProtBase
from .sets import listSome
from .train_start import producingRun, runName


class CryoUnetProtImportCoordinates(CryoUnetProtBase, EMProtocol):
    """Import particle coordinates from one file per micrograph: RELION STAR
    (_rlnCoordinateX/Y, optional _rlnAutopickFigureOfMerit kept as a score), EMAN BOX or plain
    CSV/TXT (x y [score]). A file belongs to the micrograph with the same file stem
    (mic_001.star -> mic_001.mrc). Needs no other plugin, so the scripted CryoUNet workflow runs on
    a plain Scipion installation.
    """
    _label = "CryoUNet import coordinates (STAR/BOX/CSV)"
    _possibleOutputs = ProtParticlePickingOutput

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMicrographs", params.PointerParam, pointerClass="SetOfMicrographs",
                      important=True, label="Input micrographs",
                      help="Micrographs the coordinates were picked on.")
        form.addParam("filesPath", params.PathParam, important=True,
                      label="Coordinates folder",
                      help="Folder with one coordinate file per micrograph, named like the "
                           "micrograph: for mic.mrc, mic.star, mic_autopick.star, "
                           "mic_manualpick.star, mic_picks.star, mic.cbox, mic.box, mic.csv, "
                           "mic.txt or mic.coords.")
        form.addParam("filesPattern", params.StringParam, default="*.star",
                      label="Pattern",
                      help="Glob selecting the files in that folder, e.g. *.star, *.box, "
                           "*_autopick.star (then the stem must still equal the micrograph's: "
                           "rename or use a matching pattern).")
        form.addParam("boxSize", params.IntParam, default=0, validators=[params.GE(0)],
                      label="Box size (px)",
                      help="Box size of the coordinates in pixels of the micrographs: the "
                           "extraction box, by CryoUNet's convention %g x the particle diameter "
                           "(the train and post-process protocols take the diameter as box / %g "
                           "when none is given). 0 = the box size of the coordinates they correct "
                           "(below), else not set." % (engine.BOX_FACTOR, engine.BOX_FACTOR))
        form.addParam("scale", params.FloatParam, default=1.0, validators=[params.Positive],
                      label="Scale",
                      help="Multiply the coordinates by this factor, e.g. 0.5 when the files "
                           "refer to micrographs twice as large as these.")
        form.addParam("correctedPicks", params.PointerParam, pointerClass="SetOfCoordinates",
                      allowsNull=True, label="Corrections of",
                      help="Optional: the coordinates these files correct, e.g. a CryoUNet pick "
                           "exported, corrected on a few micrographs in another program and imported "
                           "back. It records where they come from, so that the train protocol's "
                           "'Start from = the model that picked them' finds the model that picked "
                           "them, and gives its box size when 'Box size' is 0.")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def createOutputStep(self):
        micSet = self.inputMicrographs.get()
        stems = [self._micStem(mic) for mic in micSet.iterItems()]
        files = engine.findCoordinateFiles(self.filesPath.get().strip(), self.filesPattern.get(), stems)
        if not files:
            raise ValueError("No coordinate files match %s in %s."
                             % (self.filesPattern.get(), self.filesPath.get()))
        output = self._createSetOfCoordinates(micSet)
        if self._boxSize():
            output.setBoxSize(self._boxSize())
        scale = self.scale.get()
        matched = set()
        nCoords = 0
        for mic in micSet.iterItems():
            stem = self._micStem(mic)
            path = files.get(stem)
            if path is None:
                continue
            matched.add(stem)
            picks = engine.readCoordinates(path)
            scores = picks.scores
            for i, (x, y) in enumerate(picks.xy):
                coord = Coordinate()
                coord.setMicrograph(mic)
                coord.setPosition(*roundPosition(x * scale, y * scale))
                if scores is not None:
                    setattr(coord, IMPORTED_SCORE_ATTR, Float(float(scores[i])))
                output.append(coord)
                nCoords += 1
        if not matched:
            raise ValueError("None of the %d coordinate files matches a micrograph of %s by "
                             "name (e.g. %s vs %s)."
                             % (len(files), micSet.getNameId(), listSome(sorted(files), 2),
                                listSome([self._micStem(micSet.getFirstItem())], 1)))
        unmatched = sorted(set(files) - matched)
        if unmatched:
            self.warning("%d coordinate file(s) match no micrograph: %s"
                         % (len(unmatched), listSome(unmatched)))
        self.info("Imported %d coordinates on %d micrographs." % (nCoords, len(matched)))
        self._defineOutputs(outputCoordinates=output)
        self._defineSourceRelation(self.inputMicrographs, output)
        if self.correctedPicks.get() is not None:
            self._defineSourceRelation(self.correctedPicks, output)

    def _boxSize(self):
        """The form's box size, else that of the coordinates corrected (0: none)."""
        corrected = self.correctedPicks.get()
        return self.boxSize.get() or ((corrected.getBoxSize() or 0) if corrected is not None else 0)

    @staticmethod
    def _micStem(mic):
        return micrographStem(mic.getFileName())

    def _validate(self):
        errors = []
        folder = (self.filesPath.get() or "").strip()
        if not folder or not os.path.exists(folder):
            errors.append("Coordinates folder %s does not exist." % folder)
        else:
            try:  # the engine names the folder to give for a file (a pick folder's index stands for it)
                if not engine.findCoordinateFiles(folder, self.filesPattern.get()):
                    errors.append("No coordinate files match %s in %s."
                                  % (self.filesPattern.get(), folder))
            except ValueError as exc:
                errors.append(str(exc))
        return errors

    def _warnings(self):
        if not self._boxSize():
            return ["Without a box size, the training protocol needs the particle diameter "
                    "to be given explicitly."]
        return []

    def _summary(self):
        output = getattr(self, "outputCoordinates", None)
        if output is None:
            return ["Coordinates not imported yet."]
        summary = ["Imported %d coordinates from %s (%s), box size %s px."
                   % (output.getSize(), self.filesPath.get(), self.filesPattern.get(),
                      output.getBoxSize())]
        if self.correctedPicks.get() is not None:
            summary.append("Corrections of the coordinates of run %s."
                           % runName(producingRun(self.correctedPicks, self.getProject())))
        return summary

    def _methods(self):
        output = getattr(self, "outputCoordinates", None)
        if output is None:
            return ["Coordinates not imported yet."]
        return ["%d particle coordinates were imported." % output.getSize()]

    def _citations(self):
        return []
