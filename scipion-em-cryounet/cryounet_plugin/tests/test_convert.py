"""Scipion-side conversion helpers (no Scipion project): naming, matching, units, scores."""
import pytest

from cryounet_plugin import convert as C
from cryounet_plugin.constants import IMPORTED_SCORE_ATTR, SCORE_ATTR, SPREAD_ATTR, UNIT_ANGSTROM, UNIT_PIXELS


# --------------------------------------------------------------------------- naming/matching
def test_unique_stems():
    stems = C.uniqueStems([(1, "/x/a.mrc"), (2, "/y/a.mrc"), (3, "/z/b c.mrc"),
                           (4, "/w/coordinates.mrc")])
    assert stems == {1: "a_1", 2: "a_2", 3: "b_c", 4: "coordinates_4"}
    assert C.uniqueStems([(5, "a.mrc")], taken={"a"}) == {5: "a_5"}
    assert C.uniqueStems([(1, "a.mrc"), (2, "a_1.mrc"), (3, "a.mrc")])[1] == "a_1_2"
    assert len(set(C.uniqueStems([(i, "same.mrc") for i in range(50)]).values())) == 50


def test_match_micrographs():
    mics = {1: "a.mrc", 2: "b.mrc", 3: "c.mrc"}
    # same lineage: ids and names agree
    assert C.matchMicrographs(mics, {1: "a.mrc", 3: "c.mrc"}) == ({1: 1, 3: 3}, False)
    # another set of the same micrographs: ids differ, names match
    assert C.matchMicrographs(mics, {7: "b.mrc", 9: "zzz.mrc"}) == ({7: 2}, True)
    # a separate import whose ids coincide but whose micrographs differ: no match
    assert C.matchMicrographs(mics, {1: "other_000.mrc", 2: "other_001.mrc"}) == ({}, False)
    # unknown names fall back to ids
    assert C.matchMicrographs({1: None}, {1: None}) == ({1: 1}, False)


# --------------------------------------------------------------------------- sizes
def test_sizes():
    assert C.diameterInPixels(30, UNIT_PIXELS, None) == 30
    assert C.diameterInPixels(150, UNIT_ANGSTROM, 1.5) == 100
    with pytest.raises(ValueError, match="sampling rate"):
        C.diameterInPixels(150, UNIT_ANGSTROM, 0)
    assert C.samePixelSize(1.0, 1.01) and not C.samePixelSize(1.0, 1.1)
    assert C.samePixelSize(None, 2.0)
    assert C.nmsFraction(12, 24) == 0.5
    assert C.roundPosition(10.5, 3.49) == (11, 3) and C.roundPosition(-0.4, 0) == (0, 0)


def test_format_refine_history():
    lines = C.formatRefineHistory([
        {"round": 0, "positive_threshold": None, "negative_threshold": None,
         "pseudo_positives": 0, "micrographs_used": 0, "valid_f1": 0.5},
        {"round": 1, "positive_threshold": 0.98, "negative_threshold": 0.02,
         "pseudo_positives": 37, "micrographs_used": 4, "valid_f1": 0.61}])
    assert lines == ["Round 0 (input model): validation F1 0.500",
                     "Round 1: 37 pseudo-labelled particles on 4 micrographs (positive "
                     "threshold 0.980, negative threshold 0.020), validation F1 0.610"]


# --------------------------------------------------------------------------- scores
def test_choose_score_attribute():
    assert C.chooseScoreAttribute([SCORE_ATTR, SPREAD_ATTR]) == SCORE_ATTR
    assert C.chooseScoreAttribute(["_topazScore"]) == "_topazScore"
    assert C.chooseScoreAttribute([IMPORTED_SCORE_ATTR, "_other"]) == IMPORTED_SCORE_ATTR
    assert C.chooseScoreAttribute(["_myScore"]) == "_myScore"
    assert C.chooseScoreAttribute([]) is None
    assert C.chooseScoreAttribute(["_a", "_b"], "b") == "_b"
    with pytest.raises(ValueError, match="several attributes could be the score"):
        C.chooseScoreAttribute(["_a", "_b"])
    with pytest.raises(ValueError, match="no attribute _c"):
        C.chooseScoreAttribute(["_a"], "_c")


def test_link_and_list(tmp_path):
    """The protocols' base helpers that hand micrographs to the engine."""
    import os

    from cryounet_plugin.protocols.sets import linkFile, writeMicrographList

    source = tmp_path / "src.mrc"
    source.write_text("x")
    link = linkFile(str(source), str(tmp_path / "links" / "a.mrc"))
    assert os.path.realpath(link) == str(source.resolve())
    linkFile(str(source), link)  # idempotent
    writeMicrographList(str(tmp_path / "list.txt"), ["/a/1.mrc", "/b/2.mrc"])
    assert (tmp_path / "list.txt").read_text() == "/a/1.mrc\n/b/2.mrc\n"


def test_training_epochs_text():
    """Epochs run and the one kept: the history record with the model's validation metrics (a
    later epoch with other metrics was not kept), or the epoch a calibration-fold run recorded."""
    def record(epoch, f1):
        return {"epoch": epoch, "valid_f1": f1, "valid_ap": f1 - 0.1, "valid_precision": f1,
                "valid_recall": f1}

    history = [record(1, 0.5), record(2, 0.7), record(3, 0.6)]
    kept = {"f1": 0.7, "ap": 0.6, "precision": 0.7, "recall": 0.7}
    assert C.keptEpoch(history, kept) == 2
    assert C.trainingEpochsText(history, kept, 40) == (
        "Epochs: 3 run of at most 40 (stopped early); kept the weights of epoch 2 (validation F1 0.700).")
    assert C.trainingEpochsText(history, {"f1": 0.9}, 3) == (
        "Epochs: 3 run of at most 3; the kept epoch is not recorded.")
    assert C.trainingEpochsText(history, {"f1": 0.9}, 3, mainEpochs=1).endswith("epoch 1 (validation F1 0.500).")
