"""Pure conversion helpers (no Scipion project): STAR files, naming, matching, model folders.

The coordinate files and MRC shapes are read and written by the engine's ``cryounet.io`` (the
plugin's only file-format code); these tests pin what the plugin relies on from it.
"""
import json
import os

import mrcfile
import numpy as np
import pytest
import starfile
from cryounet.errors import InputFileError
from cryounet.io.coordinates import (Picks, read_coordinates, read_star_index, write_star_index,
                                     write_star_picks)
from cryounet.io.mrc import micrograph_shape

from cryounet_plugin import convert as C
from cryounet_plugin.constants import (COORDS_INDEX, IMPORTED_SCORE_ATTR, SCORE_ATTR,
                                       SPREAD_ATTR, UNIT_ANGSTROM, UNIT_PIXELS)


# --------------------------------------------------------------------------- STAR
def test_star_coordinates_roundtrip_and_starfile(tmp_path):
    xy = np.array([[10.25, 20.5], [300.0, 7.75], [0.0, 1023.0]])
    scores = np.array([0.91, 0.42, 0.66])
    spread = np.array([0.01, 0.2, 0.05])
    path = tmp_path / "mic.star"
    write_star_picks(str(path), Picks(xy, scores, spread))
    picks = read_coordinates(str(path))
    back, backScores, backSpread = picks.xy, picks.scores, picks.uncertainty
    np.testing.assert_allclose(back, xy, atol=0.005)
    np.testing.assert_allclose(backScores, scores, atol=1e-6)
    np.testing.assert_allclose(backSpread, spread, atol=1e-6)
    table = starfile.read(path)  # RELION tools read it too
    np.testing.assert_allclose(table["rlnCoordinateY"], xy[:, 1], atol=0.005)
    np.testing.assert_allclose(table["rlnAutopickFigureOfMerit"], scores, atol=1e-6)
    assert list(table["rlnAnglePsi"]) == [-999.0] * 3


def test_star_without_scores_and_empty(tmp_path):
    path = tmp_path / "a.star"
    write_star_picks(str(path), Picks([(1, 2)]))
    picks = read_coordinates(str(path))
    xy, scores, spread = picks.xy, picks.scores, picks.uncertainty
    assert xy.tolist() == [[1, 2]] and scores.tolist() == [1.0] and spread is None
    empty = tmp_path / "empty.star"
    write_star_picks(str(empty), Picks(np.zeros((0, 2))))
    xy = read_coordinates(str(empty)).xy
    assert xy.shape == (0, 2)
    blank = tmp_path / "blank.star"
    blank.write_text("")
    assert read_coordinates(str(blank)).xy.shape == (0, 2)


def test_star_errors(tmp_path):
    bad = tmp_path / "bad.star"
    bad.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2 3\n")
    # the file named, and the field counts of the bad row (pandas' words, via starfile)
    with pytest.raises(InputFileError,
                       match=r"bad\.star: not a readable STAR file \(.*\b3\b.*\b2\b"):
        read_coordinates(str(bad))
    other = tmp_path / "other.star"
    other.write_text("data_x\nloop_\n_rlnImageName #1\nabc\n")
    with pytest.raises(InputFileError, match="no _rlnCoordinateX"):
        read_coordinates(str(other))


def test_star_reads_relion_style_multiblock(tmp_path):
    path = tmp_path / "r.star"
    path.write_text("# RELION\ndata_general\n_rlnImageSizeX 100\n\ndata_particles\nloop_\n"
                    "_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    '"mic 1.mrc" 5.0 6.0\nmic2.mrc 7 8\n')
    picks = read_coordinates(str(path))
    xy, scores = picks.xy, picks.scores
    assert xy.tolist() == [[5.0, 6.0], [7.0, 8.0]] and scores is None


def test_star_index_roundtrip(tmp_path):
    path = tmp_path / COORDS_INDEX
    entries = [("Runs/1/extra/mic 1.mrc", "Runs/2/extra/coordinates/mic_1.star"),
               ("b.mrc", "b.star")]
    write_star_index(str(path), entries)
    assert read_star_index(str(path)) == {"mic_1": entries[0][0], "b": entries[1][0]}
    table = starfile.read(path)
    assert list(table["rlnMicrographName"]) == [e[0] for e in entries]
    assert list(table["rlnMicrographCoordinates"]) == [e[1] for e in entries]


def test_other_coordinate_formats(tmp_path):
    box = tmp_path / "m.box"
    box.write_text("10 20 30 30\n100 50 30 30\n")
    picks = read_coordinates(str(box))
    xy, scores = picks.xy, picks.scores
    assert xy.tolist() == [[25, 35], [115, 65]] and scores is None
    csv = tmp_path / "m.csv"
    csv.write_text("x,y,score\n1.5,2.5,0.9\n3,4,0.1\n")
    picks = read_coordinates(str(csv))
    xy, scores = picks.xy, picks.scores
    assert xy.tolist() == [[1.5, 2.5], [3, 4]] and scores.tolist() == [0.9, 0.1]
    unknown = tmp_path / "m.xyz"
    unknown.write_text("1 2\n")  # the engine checks that a file exists before its format
    with pytest.raises(InputFileError, match="unknown coordinate format"):
        read_coordinates(str(unknown))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\nfoo bar\n")
    with pytest.raises(InputFileError, match="line 2 is not numeric"):
        read_coordinates(str(bad))


def test_find_coordinate_files(tmp_path):
    for name in ("a.star", "b.star", "coordinates.star", "notes.md", "c.box"):
        (tmp_path / name).write_text("")
    found = C.findCoordinateFiles(str(tmp_path), "*")
    assert sorted(found) == ["a", "b", "c"]  # the index and other files are ignored
    assert sorted(C.findCoordinateFiles(str(tmp_path), "*.star")) == ["a", "b"]
    (tmp_path / "a.box").write_text("")
    with pytest.raises(ValueError, match="several coordinate files for micrograph 'a'"):
        C.findCoordinateFiles(str(tmp_path), "*")


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


# --------------------------------------------------------------------------- model folders
def writeModel(folder, **overrides):
    os.makedirs(folder, exist_ok=True)
    cfg = {"format": "cryounet-model", "format_version": 1, "diameter_px": 24.0,
           "threshold": 0.42, "validation": {"precision": 0.8, "recall": 0.7, "f1": 0.75,
                                             "ap": 0.77},
           "config": {"model": {"architecture": "attention_unet"}}, "cryounet_version": "0.1.0"}
    cfg.update(overrides)
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump(cfg, handle)
    with open(os.path.join(folder, "model.safetensors"), "wb") as handle:
        handle.write(b"\0" * 16)
    return folder


def test_read_model_info(tmp_path):
    folder = writeModel(str(tmp_path / "m"))
    info = C.readModelInfo(folder)
    assert info == {"diameter": 24.0, "threshold": 0.42, "threshold_tta": None,
                    "architecture": "attention_unet", "precision": 0.8, "recall": 0.7,
                    "f1": 0.75, "ap": 0.77, "version": "0.1.0"}
    assert C.checkModelFolder(folder) == []
    assert C.readModelInfo(writeModel(str(tmp_path / "t"), threshold_tta=0.3))["threshold_tta"] == 0.3


def test_model_folder_problems(tmp_path):
    assert "does not exist" in C.checkModelFolder(str(tmp_path / "none"))[0]
    folder = writeModel(str(tmp_path / "m"), format="something-else")
    assert "not a CryoUNet model" in C.checkModelFolder(folder)[0]
    folder = writeModel(str(tmp_path / "m2"), diameter_px=-3)
    assert "must be positive" in C.checkModelFolder(folder)[0]
    folder = writeModel(str(tmp_path / "m3"))
    os.remove(os.path.join(folder, "model.safetensors"))
    assert C.checkModelFolder(folder) == ["model folder %s has no model.safetensors" % folder]
    with open(os.path.join(writeModel(str(tmp_path / "m4")), "config.json"), "w") as handle:
        handle.write("{not json")
    assert "not valid JSON" in C.checkModelFolder(str(tmp_path / "m4"))[0]


def test_histories(tmp_path):
    folder = str(tmp_path)
    assert C.readHistory(folder) == [] and C.readValidationCurve(folder) is None
    (tmp_path / "refine_history.json").write_text(json.dumps([
        {"round": 0, "positive_threshold": None, "negative_threshold": None,
         "pseudo_positives": 0, "micrographs_used": 0, "valid_f1": 0.5},
        {"round": 1, "positive_threshold": 0.98, "negative_threshold": 0.02,
         "pseudo_positives": 37, "micrographs_used": 4, "valid_f1": 0.61}]))
    lines = C.formatRefineHistory(C.readRefineHistory(folder))
    assert lines == ["Round 0 (input model): validation F1 0.500",
                     "Round 1: 37 pseudo-labelled particles on 4 micrographs (positive "
                     "threshold 0.980, negative threshold 0.020), validation F1 0.610"]
    (tmp_path / "validation_curve.json").write_text('{"thresholds": [0.5]}')
    with pytest.raises(ValueError, match="has no 'precision'"):
        C.readValidationCurve(folder)


# --------------------------------------------------------------------------- configs, sizes
def test_extra_config():
    assert C.parseExtraConfig("  ") == {}
    assert C.parseExtraConfig('{"train": {"epochs": 2}}') == {"train": {"epochs": 2}}
    for text, message in (("{bad", "not valid JSON"), ("[1]", "must be a JSON object"),
                          ('{"trian": {}}', "unknown section 'trian'"),
                          ('{"train": 3}', "section 'train' must be an object")):
        with pytest.raises(ValueError, match=message):
            C.parseExtraConfig(text)
    base = {"train": {"epochs": 40, "seed": 0}, "model": {"depth": 3}}
    merged = C.mergeConfig(base, {"train": {"epochs": 2}, "pick": {"tta": True}})
    assert merged == {"train": {"epochs": 2, "seed": 0}, "model": {"depth": 3},
                      "pick": {"tta": True}}
    assert base["train"]["epochs"] == 40  # not modified


def test_sizes():
    assert C.diameterInPixels(30, UNIT_PIXELS, None) == 30
    assert C.diameterInPixels(150, UNIT_ANGSTROM, 1.5) == 100
    with pytest.raises(ValueError, match="sampling rate"):
        C.diameterInPixels(150, UNIT_ANGSTROM, 0)
    assert C.boxSizeFromDiameter(24) == 36 and C.boxSizeFromDiameter(25) == 38
    assert C.samePixelSize(1.0, 1.01) and not C.samePixelSize(1.0, 1.1)
    assert C.samePixelSize(None, 2.0)
    assert C.nmsFraction(12, 24) == 0.5
    assert C.roundPosition(10.5, 3.49) == (11, 3) and C.roundPosition(-0.4, 0) == (0, 0)


def test_check_mrc_header(tmp_path):
    good = str(tmp_path / "good.mrc")
    with mrcfile.new(good) as handle:
        handle.set_data(np.zeros((40, 60), np.float32))
    assert C.checkMrcHeader(good) is None
    assert micrograph_shape(good) == (40, 60)
    truncated = str(tmp_path / "trunc.mrc")
    with open(good, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[:2000])
    assert "is truncated" in C.checkMrcHeader(truncated)
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(b"\xff" * 4096)
    assert C.checkMrcHeader(str(garbage)) == "has no valid MRC header"
    tiny = tmp_path / "tiny.mrc"
    tiny.write_bytes(b"abc")
    assert "too small" in C.checkMrcHeader(str(tiny))
    stack = str(tmp_path / "stack.mrc")
    with mrcfile.new(stack) as handle:
        handle.set_data(np.zeros((3, 8, 8), np.float32))
    assert "3 sections" in C.checkMrcHeader(stack)
    assert "cannot be read" in C.checkMrcHeader(str(tmp_path / "missing.mrc"))


def test_link_and_list(tmp_path):
    source = tmp_path / "src.mrc"
    source.write_text("x")
    link = C.linkFile(str(source), str(tmp_path / "links" / "a.mrc"))
    assert os.path.realpath(link) == str(source.resolve())
    C.linkFile(str(source), link)  # idempotent
    C.writeMicrographList(str(tmp_path / "list.txt"), ["/a/1.mrc", "/b/2.mrc"])
    assert (tmp_path / "list.txt").read_text() == "/a/1.mrc\n/b/2.mrc\n"


# --------------------------------------------------------------------------- scores
def test_otsu_threshold_separates_modes():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.15, 0.04, 500), rng.normal(0.85, 0.05, 200)
    threshold = C.otsuThreshold(np.concatenate([low, high]))
    assert (low < threshold).mean() > 0.99 and (high > threshold).mean() > 0.99
    assert C.otsuThreshold([0.5, 0.5]) is None and C.otsuThreshold([1.0]) is None


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
