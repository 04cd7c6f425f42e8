"""End-to-end: the CryoUNet protocols in a real Scipion project on simulated micrographs.

import micrographs + coordinates -> train (ensemble of 2, tiny) -> pick in streaming (micrographs
arrive while picking runs, two batches) -> post-process -> refine (pseudo-labels) -> import the
model folder; then viewers, wizards and summaries on the real runs.
"""
import os
import time

import numpy as np
import pytest
import json

from cryounet.io.coordinates import read_coordinates

from cryounet_plugin import engine
from cryounet_plugin.constants import COORDS_FOLDER, RECORDS_FOLDER, SCORE_ATTR, SPREAD_ATTR
from cryounet_plugin.objects import CryoUNetModel
from cryounet_plugin.protocols import (CryoUnetProtImportModel, CryoUnetProtPick,
                                       CryoUnetProtPostprocess, CryoUnetProtRefine,
                                       CryoUnetProtTrain)
from cryounet_plugin.tests.common import (SIM_BOX, SIM_DIAMETER, TINY_REFINE, CryoUnetTestBase,
                                          assertCoordinatesMatchStar, copyMicrographs,
                                          logTail, simulate, tinyConfigJson)

pytestmark = pytest.mark.scipion


def readJson(path):
    with open(path) as handle:
        return json.load(handle)


class FakeForm:
    """What a wizard needs from the Tk form: the protocol, setVar and message boxes."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.values = {}
        self.messages = []

    def setVar(self, name, value):
        self.values[name] = value

    def showWarning(self, msg, header="Warning"):
        self.messages.append(msg)

    showInfo = showError = showWarning


class TestCryoUnetWorkflow(CryoUnetTestBase):
    """One project; the tests run in order (numbered) and build on each other's runs."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.trainDir = simulate(os.path.join(cls.dataDir, "train"), micrographs=5, seed=1)
        cls.streamSource = simulate(os.path.join(cls.dataDir, "stream_source"), micrographs=4,
                                    seed=2)
        cls.importMics = cls.runProt(cls.importMicrographs(cls.trainDir))
        cls.importCoords = cls.importCoordinates(cls.importMics, cls.trainDir,
                                                 boxSize=SIM_BOX)

    # ------------------------------------------------------------------ train
    def test_01_train_ensemble(self):
        prot = self.newProtocol(CryoUnetProtTrain, epochs=1, ensembleSize=2,
                                mixArchitectures=True, validFraction=0.2, seed=3,
                                useGpu=False, numberOfThreads=3,
                                extraConfig=tinyConfigJson())
        prot.inputMicrographs.set(self.importMics)
        prot.inputMicrographs.setExtended("outputMicrographs")
        prot.inputCoordinates.set(self.importCoords)
        prot.inputCoordinates.setExtended("outputCoordinates")
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        type(self).train = prot

        models = [prot.outputModel, prot.outputModel2]
        archs = [m.getArchitecture() for m in models]
        self.assertEqual(archs, ["unet", "attention_unet"])
        for model in models:
            self.assertIsInstance(model, CryoUNetModel)
            self.assertAlmostEqual(model.getDiameter(), SIM_DIAMETER, places=3)
            self.assertAlmostEqual(model.getSamplingRate(), 2.0)
            cfg = readJson(os.path.join(model.getPath(), engine.MODEL_CONFIG))
            self.assertAlmostEqual(model.getThreshold(), cfg["threshold"], places=6)
            self.assertAlmostEqual(model.getThresholdTta(), cfg["threshold_tta"], places=6)
            self.assertAlmostEqual(model.getF1(), cfg["validation"]["f1"], places=6)
        # the engine got the protocol's parameters through the JSON config files
        for tag, seed, arch in (("train_1", 3, "unet"), ("train_2", 4, "attention_unet")):
            written = readJson(prot._getExtraPath("cryounet_%s.json" % tag))
            self.assertEqual(written["train"]["seed"], seed)
            self.assertEqual(written["model"]["architecture"], arch)
            self.assertEqual(written["model"]["base_channels"], 4)  # from the extra options
            self.assertEqual(written["target"]["separation"], "auto")  # the form's default
            self.assertTrue(os.path.exists(prot._getExtraPath("cryounet_%s.cmd" % tag)))
        # one STAR file per labelled micrograph, coordinates unchanged (same pixel size)
        coords = sorted(os.listdir(prot._getExtraPath(COORDS_FOLDER)))
        self.assertEqual(coords, ["mic_%03d.star" % i for i in range(5)])
        xy = read_coordinates(prot._getExtraPath(COORDS_FOLDER, "mic_000.star")).xy
        original = read_coordinates(os.path.join(self.trainDir, "mic_000.star")).xy
        np.testing.assert_allclose(xy, np.floor(original + 0.5))
        summary = "\n".join(prot.summary())
        self.assertIn("F1", summary)
        self.assertIn("threshold", summary)
        self.assertIn("5 labelled micrographs", summary)
        # the summary says where training started and which epoch each model kept
        self.assertIn("starting from random weights (scratch), chosen automatically for 5 labelled "
                      "micrograph(s).", summary)
        self.assertEqual(summary.count("  Epochs: 1 run of at most 1; kept the weights of epoch 1 "
                                       "(validation F1 "), 2)
        # the engine's epoch lines reach the run's output log (run.stdout), not only run.stderr
        with open(prot.getStdoutLog()) as handle:
            self.assertIn("epoch 1/1: loss", handle.read())

    # ------------------------------------------------------------------ pick (streaming)
    def test_02_pick_streaming(self):
        streamDir = os.path.join(self.dataDir, "stream")
        names = ["mic_%03d.mrc" % i for i in range(4)]
        copyMicrographs(self.streamSource, streamDir, names[:2])
        importStream = self.importMicrographs(streamDir, dataStreaming=True, timeout="10m",
                                              fileTimeout="1")
        self.proj.launchProtocol(importStream, wait=False)
        self._waitForOutput(importStream, "outputMicrographs")

        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, streamingBatchSize=2,
                                streamingSleepOnWait=0, extraConfig='{"pick": {"tile_size": 256}}')
        pick.inputMicrographs.set(importStream)
        pick.inputMicrographs.setExtended("outputMicrographs")
        pick.inputModels.append(self._pointer(self.train, "outputModel"))
        pick.inputModels.append(self._pointer(self.train, "outputModel2"))
        self.proj.launchProtocol(pick, wait=False)
        # the second batch arrives only after the first one is picked
        self._waitForFile(pick._getExtraPath(RECORDS_FOLDER, "mic_000002.json"), pick)
        copyMicrographs(self.streamSource, streamDir, names[2:])
        self._waitForSize(importStream, "outputMicrographs", 4)
        open(importStream._getStopStreamingFilename(), "w").close()  # "Stop import" action
        self.waitFor(importStream, timeout=120)
        self.waitFor(pick, timeout=300)
        self.assertTrue(pick.isFinished(), "%s: %s\n%s" % (pick.getStatus(), pick.getErrorMessage(),
                                                          logTail(pick)))
        type(self).pick = pick
        type(self).streamImport = importStream

        output = pick.outputCoordinates
        self.assertTrue(output.isStreamClosed())
        self.assertEqual(importStream.outputMicrographs.getSize(), 4)
        records = pick._allRecords()
        self.assertEqual(sorted(r["micId"] for r in records), [1, 2, 3, 4])
        self.assertTrue(all(r["coordinates"] and not r["skipped"] for r in records), records)
        self.assertEqual(output.getBoxSize(), SIM_BOX)
        self.assertGreater(output.getSize(), 0)
        batches = [step for step in pick.loadSteps()
                   if step.funcName.get() == "pickMicrographListStep"]
        self.assertEqual(len(batches), 2)  # two streaming batches of two micrographs
        self.assertTrue(all(step.isFinished() for step in batches))
        first = output.getFirstItem()
        self.assertTrue(hasattr(first, SCORE_ATTR) and hasattr(first, SPREAD_ATTR))
        n = assertCoordinatesMatchStar(self, pick, output, spread=True)
        self.assertEqual(n, output.getSize())
        for coord in output.iterItems():
            self.assertGreaterEqual(getattr(coord, SCORE_ATTR).get(), 0.0)
            self.assertLessEqual(getattr(coord, SCORE_ATTR).get(), 1.0)
        self.assertIn("Micrographs picked: 4, skipped: 0", "\n".join(pick.summary()))

    # ------------------------------------------------------------------ post-process
    def test_03_postprocess(self):
        source = self.pick.outputCoordinates
        scores = np.array([getattr(c, SCORE_ATTR).get() for c in source.iterItems()])
        threshold = float(np.sort(scores)[len(scores) // 2])  # a score value: exact in STAR
        prot = self.newProtocol(CryoUnetProtPostprocess, applyThreshold=True,
                                threshold=threshold, edgeDistance=20, maxPerMicrograph=8)
        prot.inputCoordinates.set(self.pick)
        prot.inputCoordinates.setExtended("outputCoordinates")
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        type(self).post = prot
        output = prot.outputCoordinates
        self.assertEqual(output.getBoxSize(), source.getBoxSize())
        self.assertLessEqual(output.getSize(), source.getSize())
        # independent expectation: score >= threshold, centre at least 20 px inside the
        # micrograph (which spans -0.5 .. 255.5 in pixel-centre coordinates), best 8 per mic
        candidates = {}
        for c in source.iterItems():
            score, x, y = getattr(c, SCORE_ATTR).get(), c.getX(), c.getY()
            if score >= threshold and 19.5 <= x <= 235.5 and 19.5 <= y <= 235.5:
                candidates.setdefault(c.getMicId(), []).append((score, x, y))
        kept = {}
        for c in output.iterItems():
            kept.setdefault(c.getMicId(), []).append((getattr(c, SCORE_ATTR).get(), c.getX(),
                                                      c.getY()))
        self.assertEqual({m: len(v) for m, v in kept.items()},
                         {m: min(len(v), 8) for m, v in candidates.items()})
        for micId, picks in kept.items():
            self.assertTrue(set(picks) <= set(candidates[micId]))
            dropped = set(candidates[micId]) - set(picks)
            if dropped:  # the best-scoring ones were kept
                self.assertGreaterEqual(min(p[0] for p in picks), max(p[0] for p in dropped))
        assertCoordinatesMatchStar(self, prot, output, spread=True)
        self.assertIn("Kept %d of %d" % (output.getSize(), source.getSize()),
                      "\n".join(prot.summary()))

    def test_03a_postprocess_keeps_the_picks_own_threshold(self):
        """A default post-process keeps the threshold the picks were made at: every pick stays,
        no --threshold reaches the engine, and the summary names that threshold and its run."""
        source = self.pick.outputCoordinates
        prot = self.newProtocol(CryoUnetProtPostprocess)
        prot.inputCoordinates.set(self.pick)
        prot.inputCoordinates.setExtended("outputCoordinates")
        self.assertFalse(prot.applyThreshold.get())
        own, where = prot.getOwnThreshold()
        self.assertAlmostEqual(own, self.pick.getPickingThreshold(), places=9)
        self.assertEqual("pick run '%s', calibrated at training for the best F1" % self.pick.getRunName(), where)
        self.assertGreaterEqual(min(getattr(c, SCORE_ATTR).get() for c in source.iterItems()), own - 1e-6)
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        self.assertEqual(prot.outputCoordinates.getSize(), source.getSize())
        with open(prot._getExtraPath("cryounet_postprocess.cmd")) as handle:
            self.assertNotIn("--threshold", handle.read())
        self.assertIn("Filters: score >= the picks' own threshold (%.3f, pick run '%s'"
                      % (own, self.pick.getRunName()), "\n".join(prot.summary()))
        # Yes without a value is a form error; a value below the picks' own removes nothing: said
        lower = self.newProtocol(CryoUnetProtPostprocess, applyThreshold=True)
        lower.inputCoordinates.set(self.pick)
        lower.inputCoordinates.setExtended("outputCoordinates")
        self.assertTrue(any(e.startswith("Set the score threshold (its wizard suggests one)")
                            for e in lower.validate()), lower.validate())
        lower.threshold.set(own / 2)
        self.assertEqual(lower.validate(), [])
        self.assertTrue(any("is below %.3f, the threshold these picks were made at" % own in w
                            for w in lower.warnings()), lower.warnings())
        # on a post-process run's picks: the threshold that run applied
        chained = self.newProtocol(CryoUnetProtPostprocess)
        chained.inputCoordinates.set(self.post)
        chained.inputCoordinates.setExtended("outputCoordinates")
        self.assertEqual(chained.getOwnThreshold(), (self.post.threshold.get(), "re-thresholded by run '%s'"
                                                     % self.post.getRunName()))
        chained.inputCoordinates.set(prot)  # which kept its input's
        self.assertEqual(chained.getOwnThreshold(), (own, where))

    # ------------------------------------------------------------------ refine
    def test_04_refine(self):
        prot = self.newProtocol(CryoUnetProtRefine, rounds=2, epochs=1, useGpu=False,
                                extraConfig=tinyConfigJson(TINY_REFINE))
        prot.inputModel.set(self.train)
        prot.inputModel.setExtended("outputModel")
        prot.inputCoordinates.set(self.importCoords)
        prot.inputCoordinates.setExtended("outputCoordinates")
        prot.inputUnlabelled.set(self.streamImport)
        prot.inputUnlabelled.setExtended("outputMicrographs")
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        model = prot.outputModel
        self.assertAlmostEqual(model.getDiameter(), SIM_DIAMETER, places=3)
        history = readJson(os.path.join(model.getPath(), "refine_history.json"))
        self.assertEqual([h["round"] for h in history], [0, 1, 2])  # 0 = the input model
        summary = "\n".join(prot.summary())
        self.assertIn("Round 0 (input model): validation F1", summary)
        for item in history[1:]:
            self.assertIn("Round %s: %s pseudo-labelled particles on %s micrographs"
                          % (item["round"], item["pseudo_positives"], item["micrographs_used"]),
                          summary)
        self.assertIn("4 unlabelled micrographs", summary)

    # ------------------------------------------------------------------ import model
    def test_05_import_model(self):
        source = self.train.outputModel2
        prot = self.newProtocol(CryoUnetProtImportModel, modelFolder=source.getPath(),
                                samplingRate=2.0)
        self.runProt(prot)
        model = prot.outputModel
        self.assertNotEqual(os.path.abspath(model.getPath()), os.path.abspath(source.getPath()))
        for getter in ("getDiameter", "getArchitecture", "getF1", "getThreshold"):
            self.assertEqual(getattr(model, getter)(), getattr(source, getter)(), getter)
        self.assertTrue(os.path.exists(model.getWeightsFile()))
        self.assertFalse(os.path.exists(os.path.join(model.getPath(), "checkpoint.pt")))
        # the pick form offers the newest models: this run's, the last to finish with models
        from cryounet_plugin.wizards import CryoUnetNewestModelWizard
        pick = self.newProtocol(CryoUnetProtPick)
        self.assertIn("Select at least one model (the wizard of 'Input models' adds the newest trained "
                      "ones, of run '%s')." % prot.getRunName(), pick.validate())
        form = FakeForm(pick)
        CryoUnetNewestModelWizard().show(form)
        self.assertEqual([(p.getObjValue().getObjId(), p.getExtended()) for p in form.values["inputModels"]],
                         [(prot.getObjId(), "outputModel")])
        self.assertEqual(form.messages, ["Added the 1 model(s) of run '%s', the newest with CryoUNet "
                                         "models." % prot.getRunName()])

    # ------------------------------------------------------------------ viewers
    def test_06_viewers(self):
        from cryounet_plugin.viewers import (CryoUnetModelViewer, CryoUnetPicksViewer,
                                             CryoUnetTrainingViewer)
        outDir = os.path.join(self.dataDir, "figures")
        os.makedirs(outDir, exist_ok=True)
        saved = []

        def save(views, name):
            self.assertTrue(views, name)
            for i, view in enumerate(views):
                self.assertTrue(hasattr(view, "getFigure"), "%s gave %s" % (name, view))
                path = os.path.join(outDir, "%s_%d.png" % (name, i))
                view.getFigure().savefig(path)
                self.assertGreater(os.path.getsize(path), 1000)
                saved.append(path)

        trainViewer = CryoUnetTrainingViewer(project=self.proj, protocol=self.train)
        trainViewer.setProtocol(self.train)
        trainViewer.member.set(2)
        save(trainViewer._showCurves(), "curves")
        save(trainViewer._showPR(), "pr")
        save(CryoUnetModelViewer(project=self.proj)._visualize(self.train.outputModel), "model")
        for prot in (self.pick, self.post):
            viewer = CryoUnetPicksViewer(project=self.proj, protocol=prot)
            viewer.setProtocol(prot)
            save(viewer._showPicks(), "picks_%s" % prot.getObjId())
            save(viewer._showHistogram(), "hist_%s" % prot.getObjId())
        self.assertEqual(len(saved), 8)
        # the picks viewer starts at the micrograph named, and browses the others in one window
        viewer = CryoUnetPicksViewer(project=self.proj, protocol=self.pick)
        viewer.setProtocol(self.pick)
        mics = [m.getMicName() for m in self.pick.outputCoordinates.getMicrographs().iterItems()]
        titles, images = [], []
        for name in ("", mics[2]):
            viewer.micName.set(name)
            (view,) = viewer._showPicks()
            axes = view.browser.ax
            titles.append(axes.get_title())
            images.append(np.asarray(axes.get_images()[0].get_array()))
        self.assertEqual([t.split(" (")[0] for t in titles], [mics[0], mics[2]])
        self.assertFalse(np.array_equal(images[0], images[1]))
        view.browser.step(1)
        self.assertTrue(view.browser.ax.get_title().startswith(mics[3 % len(mics)] + " ("))
        viewer.micName.set("no such micrograph")
        (message,) = viewer._showPicks()
        self.assertFalse(hasattr(message, "getFigure"))

    # ------------------------------------------------------------------ wizards
    def test_07_wizards(self):
        from cryounet_plugin.wizards import CryoUnetDiameterWizard, CryoUnetThresholdWizard
        train = self.newProtocol(CryoUnetProtTrain, diameterUnit=1)
        train.inputMicrographs.set(self.importMics)
        train.inputMicrographs.setExtended("outputMicrographs")
        train.inputCoordinates.set(self.importCoords)
        train.inputCoordinates.setExtended("outputCoordinates")
        form = FakeForm(train)
        CryoUnetDiameterWizard().show(form)
        self.assertEqual(form.values, {"particleDiameter": SIM_DIAMETER * 2.0})  # Angstrom

        pick = self.newProtocol(CryoUnetProtPick)
        pick.inputModels.append(self._pointer(self.train, "outputModel"))
        pick.inputModels.append(self._pointer(self.train, "outputModel2"))
        # Test-time augmentation is on by default: the wizard suggests its calibration.
        for tta, getter in ((True, "getThresholdTta"), (False, "getThreshold")):
            pick.tta.set(tta)
            form = FakeForm(pick)
            CryoUnetThresholdWizard().show(form)
            expected = round((getattr(self.train.outputModel, getter)()
                              + getattr(self.train.outputModel2, getter)()) / 2, 3)
            self.assertAlmostEqual(form.values["threshold"], expected, places=6)

        post = self.newProtocol(CryoUnetProtPostprocess)
        post.inputCoordinates.set(self.pick)
        post.inputCoordinates.setExtended("outputCoordinates")
        form = FakeForm(post)
        CryoUnetThresholdWizard().show(form)
        # the threshold the picks were made at, saying so, and what the histogram's valley keeps
        own = post.getOwnThreshold()[0]
        self.assertEqual(form.values, {"threshold": round(own, 3)})
        self.assertTrue(form.messages[0].startswith("Suggested %.3f: the threshold these picks were "
                                                    "made at (pick run '%s'" % (own, self.pick.getRunName())),
                        form.messages)

    # ------------------------------------------------------------------ info
    def test_08_info_methods(self):
        self.assertIn("An ensemble of 2 CryoUNet", "\n".join(self.train.methods()))
        self.assertNotIn("Gaussian targets", "\n".join(self.train.methods()))  # disks, the default
        self.assertIn("%d particles were picked from 4 micrographs"
                      % self.pick.outputCoordinates.getSize(), "\n".join(self.pick.methods()))
        self.assertIn("keeping %d of %d particles" % (self.post.outputCoordinates.getSize(),
                                                     self.pick.outputCoordinates.getSize()),
                      "\n".join(self.post.methods()))
        self.assertEqual(self.train._citations(), ["Ronneberger2015", "Oktay2018"])
        citations = "".join(self.train.citations())  # resolved through bibtex.py
        self.assertIn("Ronneberger et al.", citations)
        self.assertIn("Oktay et al.", citations)  # the ensemble alternates into attention_unet

    # ------------------------------------------------------------------ the box/diameter rule
    def test_09_train_on_own_picks_keeps_the_diameter(self):
        """The loop the Scipion guide recommends: train on CryoUNet's own picks with diameter 0. The
        pick protocol writes box = 1.5 x diameter; train takes box / 1.5 back, so the new model
        has the diameter of the one that picked (not 1.5 x it, as before the rule was shared)."""
        prot = self.newProtocol(CryoUnetProtTrain, epochs=1, particleDiameter=0, useGpu=False,
                                extraConfig=tinyConfigJson())
        prot.inputMicrographs.set(self.streamImport)
        prot.inputMicrographs.setExtended("outputMicrographs")
        prot.inputCoordinates.set(self.pick)
        prot.inputCoordinates.setExtended("outputCoordinates")
        self.assertEqual(prot._getDiameterPx(), SIM_DIAMETER)
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        self.assertAlmostEqual(prot.outputModel.getDiameter(), self.train.outputModel.getDiameter(),
                               places=3)
        self.assertAlmostEqual(prot.outputModel.getDiameter(), SIM_DIAMETER, places=3)
        # post-processing the same picks with diameter 0 uses the same rule
        post = self.newProtocol(CryoUnetProtPostprocess, particleDiameter=0)
        post.inputCoordinates.set(self.pick)
        post.inputCoordinates.setExtended("outputCoordinates")
        self.assertEqual(post._getDiameterPx(), SIM_DIAMETER)

    def test_10_pick_with_a_particle_diameter(self):
        """The particle diameter at pick time (px or A) reaches the engine as --diameter and sets
        the box; without it the pixel-size check applies; a value the engine refuses is a form error."""
        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, streamingBatchSize=0, particleDiameter=96,
                                diameterUnit=1, tta=False)  # 96 A = 48 px at 2 A/px
        pick.inputMicrographs.set(self.streamImport)
        pick.inputMicrographs.setExtended("outputMicrographs")
        pick.inputModels.append(self._pointer(self.train, "outputModel"))
        self.assertEqual(pick.getPickDiameter(), 48.0)
        self.assertEqual(pick.validate(), [])
        self.runProt(pick)
        type(self).diameterPick = pick
        commands = [open(os.path.join(root, name)).read()
                    for root, _, files in os.walk(pick._getExtraPath("batches")) for name in files
                    if name.endswith(".cmd")]
        self.assertTrue(commands and all("--diameter 48.000" in c for c in commands), commands)
        self.assertEqual(pick.outputCoordinates.getBoxSize(), engine.boxSizeFromDiameter(48))
        tiny = self.newProtocol(CryoUnetProtPick, useGpu=False, particleDiameter=2)
        tiny.inputMicrographs.set(self.streamImport)
        tiny.inputMicrographs.setExtended("outputMicrographs")
        tiny.inputModels.append(self._pointer(self.train, "outputModel"))
        self.assertTrue(any("between 4 and" in e for e in tiny.validate()), tiny.validate())

    def test_11_train_from_a_previous_model(self):
        from cryounet_plugin.constants import START_AUTO, START_MODEL
        prot = self.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False, startFrom=START_MODEL,
                                extraConfig=tinyConfigJson())
        prot.inputMicrographs.set(self.importMics)
        prot.inputMicrographs.setExtended("outputMicrographs")
        prot.inputCoordinates.set(self.importCoords)
        prot.inputCoordinates.setExtended("outputCoordinates")
        self.assertIn("Choose the starting model (Start from = a model).", prot.validate())
        prot.initModel.set(self.train)
        prot.initModel.setExtended("outputModel")
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        with open(prot._getExtraPath("cryounet_train.cmd")) as handle:
            command = handle.read()
        self.assertIn("--init %s" % os.path.abspath(self.train.outputModel.getPath()), command)
        self.assertIn("--overwrite", command)
        # automatic: the general model with one labelled micrograph, scratch with more (measured)
        prot.startFrom.set(START_AUTO)
        self.assertEqual(prot._initArgs(1), ["--init", "general"])
        self.assertEqual(prot._initArgs(5), [])
        # the first training (5 labelled micrographs, automatic) started from scratch
        with open(self.train._getExtraPath("cryounet_train_1.cmd")) as handle:
            self.assertNotIn("--init", handle.read())

    def test_12_pick_with_the_general_model_or_a_library_model(self):
        """No import step: the general model shipped with the engine, or a model of the site's
        CRYOUNET_MODELS folder chosen by name (the wizard lists the usable ones)."""
        import shutil
        from cryounet_plugin import Plugin
        from cryounet_plugin.constants import MODELS_GENERAL, MODELS_LIBRARY
        from cryounet_plugin.wizards import CryoUnetLibraryModelWizard

        general = self.newProtocol(CryoUnetProtPick, useGpu=False, modelSource=MODELS_GENERAL,
                                   tta=False, streamingBatchSize=0)
        general.inputMicrographs.set(self.streamImport)
        general.inputMicrographs.setExtended("outputMicrographs")
        # the general model's diameter is its training sets': without the user's, the form refuses
        self.assertTrue(any("general model needs the particle diameter" in e for e in general.validate()))
        general.particleDiameter.set(SIM_DIAMETER)
        self.assertEqual(general.validate(), [])
        self.assertFalse(any("pixel size" in w for w in general.warnings()))
        self.runProt(general)
        type(self).generalPick = general
        self.assertIsNotNone(general.outputCoordinates)
        commands = [open(os.path.join(root, name)).read()
                    for root, _, files in os.walk(general._getExtraPath("batches")) for name in files
                    if name.endswith(".cmd")]
        self.assertTrue(commands and all("--model %s" % engine.generalModelFolder() in c
                                         for c in commands), commands)

        library = Plugin.getModelsFolder()
        os.makedirs(library, exist_ok=True)
        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, modelSource=MODELS_LIBRARY,
                                libraryModel="sim_model", tta=False, streamingBatchSize=0)
        pick.inputMicrographs.set(self.streamImport)
        pick.inputMicrographs.setExtended("outputMicrographs")
        form = FakeForm(pick)
        CryoUnetLibraryModelWizard().show(form)
        self.assertIn("holds no usable CryoUNet model", form.messages[0])
        self.assertTrue(any("there is no model 'sim_model'" in e and "none" in e for e in pick.validate()))
        shutil.copytree(self.train.outputModel.getPath(), os.path.join(library, "sim_model"))
        CryoUnetLibraryModelWizard().show(form)
        self.assertEqual(form.values, {"libraryModel": "sim_model"})
        self.assertEqual(pick.validate(), [])
        self.runProt(pick)
        type(self).libraryPick = pick
        self.assertGreater(pick.outputCoordinates.getSize(), 0)

    # ------------------------------------------------------------------ helpers
    def test_13_train_with_cross_fitted_calibration(self):
        prot = self.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False, validFraction=0.2,
                                calibrationFolds=6, separation=engine.SEPARATIONS.index("on"),
                                targetShape=engine.TARGET_SHAPES.index("gaussian"),
                                extraConfig=tinyConfigJson())
        prot.inputMicrographs.set(self.importMics)
        prot.inputMicrographs.setExtended("outputMicrographs")
        prot.inputCoordinates.set(self.importCoords)
        prot.inputCoordinates.setExtended("outputCoordinates")
        # 5 labelled micrographs, 1 held out for validation: at most 1 + 4 folds
        errors = prot.validate()
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("use at most 5 folds (of 5 labelled micrographs, 1 are held out", errors[0])
        prot.calibrationFolds.set(3)
        self.assertEqual(prot.validate(), [])
        self.runProt(prot)
        folder = prot.outputModel.getPath()
        cfg = readJson(os.path.join(folder, engine.MODEL_CONFIG))
        self.assertEqual(cfg["calibration"]["folds"], 3)
        self.assertEqual(cfg["calibration"]["micrographs"], 5)
        self.assertEqual(readJson(prot._getExtraPath("cryounet_train.json"))["train"]["calibration_folds"], 3)
        # "Separate touching particles" reaches the engine and the model it trained
        self.assertEqual(readJson(prot._getExtraPath("cryounet_train.json"))["target"]["separation"], "on")
        self.assertEqual(cfg["config"]["target"]["separation"], "on")
        # so does "Target shape", with the Gaussian's measured sigma
        self.assertEqual(readJson(prot._getExtraPath("cryounet_train.json"))["target"]["shape"], "gaussian")
        self.assertEqual(cfg["config"]["target"]["shape"], "gaussian")
        self.assertEqual(cfg["config"]["target"]["positive_radius"], engine.SHAPE_RADII["gaussian"])
        self.assertIn("augmentation, on Gaussian targets of sigma 0.1 diameters around the picks.",
                      "\n".join(prot.methods()))
        for fold in ("fold_1", "fold_2"):
            self.assertEqual(engine.checkModelFolder(os.path.join(folder, fold)), [])
        # the output carries the cross-fitted thresholds
        self.assertAlmostEqual(prot.outputModel.getThreshold(), cfg["threshold"], places=6)
        self.assertAlmostEqual(prot.outputModel.getThresholdTta(), cfg["threshold_tta"], places=6)
        # picking uses the fold networks too (an ensemble of 3), and its automatic threshold is theirs
        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, streamingBatchSize=0)
        pick.inputMicrographs.set(self.importMics)
        pick.inputMicrographs.setExtended("outputMicrographs")
        pick.inputModels.append(self._pointer(prot, "outputModel"))
        folds = [readJson(os.path.join(folder, f, engine.MODEL_CONFIG))["threshold_tta"]
                 for f in ("fold_1", "fold_2")]
        self.assertAlmostEqual(pick.getPickingThreshold(automatic=True),
                               np.mean([cfg["threshold_tta"]] + folds), places=6)
        self.assertEqual(pick.validate(), [])
        self.runProt(pick)
        self.assertGreater(pick.outputCoordinates.getSize(), 0)
        written = readJson(pick._getExtraPath("cryounet_pick.json"))
        self.assertTrue(written["pick"]["folds"])
        pick.useFolds.set(False)
        self.assertAlmostEqual(pick.getPickingThreshold(automatic=True), cfg["threshold_tta"], places=6)

    def test_14_train_from_the_model_that_picked_them(self):
        """Start from = the model that picked them: the model of the CryoUNet pick run found in the
        input coordinates' provenance (through a post-process, an import naming the picks it
        corrects), or of the pick run chosen; an ensemble or no pick run is a form error."""
        from cryounet_plugin.constants import START_PICKER
        from cryounet_plugin.protocols import CryoUnetProtImportCoordinates

        def trainOn(coordsProt, pickRun=None):
            prot = self.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False, startFrom=START_PICKER,
                                    extraConfig=tinyConfigJson())
            prot.inputMicrographs.set(self.importMics)
            prot.inputMicrographs.setExtended("outputMicrographs")
            prot.inputCoordinates.set(coordsProt)
            prot.inputCoordinates.setExtended("outputCoordinates")
            prot.pickRun.set(pickRun)
            return prot

        trained = os.path.abspath(self.train.outputModel.getPath())
        self.assertEqual(trainOn(self.diameterPick)._initArgs(3), ["--init", trained])
        direct = trainOn(self.diameterPick)  # a pointer to the set itself (scripts) finds its run too
        direct.inputCoordinates.set(self.diameterPick.outputCoordinates)
        direct.inputCoordinates.setExtended(None)
        self.assertEqual(direct._initArgs(3), ["--init", trained])
        self.assertEqual(trainOn(self.generalPick)._initArgs(3), ["--init", engine.GENERAL_MODEL])
        library = trainOn(self.libraryPick)
        self.assertEqual(library.validate(), [])
        self.assertEqual(library._initArgs(3), ["--init", os.path.abspath(self.libraryPick._getModels()[0].getPath())])
        self.assertIn("which picked run '%s' (id %d)" % (self.libraryPick.getRunName(), self.libraryPick.getObjId()),
                      library._startText(3))
        # through a post-process of the picks
        post = self.newProtocol(CryoUnetProtPostprocess, particleDiameter=0)
        post.inputCoordinates.set(self.diameterPick)
        post.inputCoordinates.setExtended("outputCoordinates")
        self.runProt(post)
        self.assertEqual(trainOn(post)._initArgs(3), ["--init", trained])
        # an ensemble (self.pick, and the post-process on it) cannot be a start
        errors = trainOn(self.post).validate()
        self.assertTrue(any("picked with an ensemble of 2 models" in e and "Start from = a model" in e
                            for e in errors), errors)
        # imported coordinates: no pick run, unless the import names the picks it corrects or
        # the pick run is chosen
        errors = trainOn(self.importCoords).validate()
        self.assertTrue(any("do not come from a CryoUNet pick run" in e and "'Pick run'" in e
                            for e in errors), errors)
        self.assertEqual(trainOn(self.importCoords, self.generalPick)._initArgs(3),
                         ["--init", engine.GENERAL_MODEL])
        corrected = self.newProtocol(CryoUnetProtImportCoordinates, filesPath=self.trainDir,
                                     filesPattern="mic_00[01].star")
        corrected.inputMicrographs.set(self.importMics)
        corrected.inputMicrographs.setExtended("outputMicrographs")
        corrected.correctedPicks.set(self.generalPick)
        corrected.correctedPicks.setExtended("outputCoordinates")
        self.runProt(corrected)
        self.assertEqual(corrected.outputCoordinates.getBoxSize(),
                         self.generalPick.outputCoordinates.getBoxSize())  # box 0: the pick's
        self.assertIn("Corrections of the coordinates of run '%s' (id %d)."
                      % (self.generalPick.getRunName(), self.generalPick.getObjId()),
                      "\n".join(corrected.summary()))
        fromCorrections = trainOn(corrected)
        self.assertEqual(fromCorrections.validate(), [])
        self.assertEqual(fromCorrections._initArgs(2), ["--init", engine.GENERAL_MODEL])

    def _pointer(self, prot, name):
        from pyworkflow.object import Pointer
        return Pointer(prot, extended=name)

    def test_14_import_coordinates_given_a_file_names_its_folder(self):
        from cryounet_plugin.protocols import CryoUnetProtImportCoordinates
        star = os.path.join(self.trainDir, sorted(f for f in os.listdir(self.trainDir)
                                                  if f.startswith("mic_") and f.endswith(".star"))[0])
        prot = self.newProtocol(CryoUnetProtImportCoordinates, filesPath=star, filesPattern="*.star",
                                boxSize=SIM_BOX)
        prot.inputMicrographs.set(self.importMics)
        prot.inputMicrographs.setExtended("outputMicrographs")
        self.assertIn("%s is a file; give the coordinates folder that holds it (%s)" % (star, self.trainDir),
                      prot.validate())

    def _waitForOutput(self, prot, name, timeout=120):
        start = time.time()
        while time.time() - start < timeout:
            self.update(prot)
            if prot.hasAttribute(name) or not prot.isActive():
                break
            time.sleep(0.5)
        self.assertTrue(prot.hasAttribute(name), "%s has no %s" % (prot.getRunName(), name))

    def _waitForSize(self, prot, name, size, timeout=120):
        start = time.time()
        while time.time() - start < timeout:
            self.update(prot)
            output = getattr(prot, name, None)
            if output is not None and output.getSize() >= size:
                return
            time.sleep(0.5)
        raise AssertionError("%s.%s never reached %d items" % (prot.getRunName(), name, size))

    def _waitForFile(self, path, prot, timeout=240):
        full = os.path.join(self.proj.getPath(), path)
        start = time.time()
        while time.time() - start < timeout:
            if os.path.exists(full):
                return
            self.update(prot)
            if not prot.isActive():
                break
            time.sleep(0.5)
        raise AssertionError("%s not written by %s (%s)" % (path, prot.getRunName(),
                                                            prot.getStatus()))
