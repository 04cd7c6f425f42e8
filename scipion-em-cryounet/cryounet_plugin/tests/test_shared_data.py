"""Real micrographs (CryoPPP EMPIAR-10028 excerpt in ../shared/data, when present): import,
train (tiny), pick and post-process in a Scipion project. Skipped when the data are absent."""
import json
import os

import pytest

from cryounet_plugin import engine
from cryounet_plugin.protocols import CryoUnetProtPick, CryoUnetProtPostprocess, CryoUnetProtTrain
from cryounet_plugin.tests.common import (SHARED_DATA, CryoUnetTestBase,
                                          assertCoordinatesMatchStar, tinyConfigJson)

DATASET = os.path.join(SHARED_DATA, "cryoppp-10028")

pytestmark = [pytest.mark.scipion,
              pytest.mark.skipif(not os.path.isdir(DATASET),
                                 reason="../shared/data/cryoppp-10028 is not present")]


class TestCryoUnetRealData(CryoUnetTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(os.path.join(DATASET, "meta.json")) as handle:
            cls.diameter = float(json.load(handle)["diameter_px"])
        cls.box = engine.boxSizeFromDiameter(cls.diameter)
        # pixel size not recorded: 1 A/px, sizes are in pixels anyway
        cls.trainMics = cls.runProt(cls.importMicrographs(os.path.join(DATASET, "train"),
                                                          samplingRate=1.0))
        cls.trainCoords = cls.importCoordinates(cls.trainMics, os.path.join(DATASET, "train"),
                                                boxSize=cls.box)
        testDir = os.path.join(cls.dataDir, "test")
        os.makedirs(testDir)
        for name in sorted(os.listdir(os.path.join(DATASET, "test")))[:4]:  # 2 micrographs
            if name.endswith(".mrc"):
                os.symlink(os.path.join(DATASET, "test", name), os.path.join(testDir, name))
        cls.testMics = cls.runProt(cls.importMicrographs(testDir, samplingRate=1.0))

    def test_train_pick_postprocess(self):
        self.assertEqual(self.trainMics.outputMicrographs.getSize(), 4)
        self.assertGreater(self.trainCoords.outputCoordinates.getSize(), 300)  # 326 published

        train = self.newProtocol(CryoUnetProtTrain, epochs=1, useGpu=False,
                                 extraConfig=tinyConfigJson())
        train.inputMicrographs.set(self.trainMics)
        train.inputMicrographs.setExtended("outputMicrographs")
        train.inputCoordinates.set(self.trainCoords)
        train.inputCoordinates.setExtended("outputCoordinates")
        self.runProt(train)
        self.assertAlmostEqual(train.outputModel.getDiameter(), self.diameter, places=3)

        pick = self.newProtocol(CryoUnetProtPick, useGpu=False, streamingBatchSize=0,
                                threshold=0.2)
        pick.inputMicrographs.set(self.testMics)
        pick.inputMicrographs.setExtended("outputMicrographs")
        from pyworkflow.object import Pointer
        pick.inputModels.append(Pointer(train, extended="outputModel"))
        self.runProt(pick)
        output = pick.outputCoordinates
        self.assertEqual(len([r for r in pick._allRecords() if r["coordinates"]]), 2)
        assertCoordinatesMatchStar(self, pick, output)
        for coord in output.iterItems():
            self.assertTrue(0 <= coord.getX() < 1024 and 0 <= coord.getY() < 1024)

        post = self.newProtocol(CryoUnetProtPostprocess, applyThreshold=False,
                                edgeDistance=self.diameter / 2.0, maxPerMicrograph=50)
        post.inputCoordinates.set(pick)
        post.inputCoordinates.setExtended("outputCoordinates")
        self.runProt(post)
        self.assertLessEqual(post.outputCoordinates.getSize(), min(100, output.getSize()))
        assertCoordinatesMatchStar(self, post, post.outputCoordinates)
