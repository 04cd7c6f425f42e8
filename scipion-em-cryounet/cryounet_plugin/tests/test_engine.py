"""The plugin's door to the engine (cryounet_plugin.engine), no Scipion project needed.

File formats, model folders, suffixes, the box and threshold rules and the command line are the
engine's; these tests pin what the plugin relies on, and that no other plugin module imports the
engine.
"""
import ast
import json
import os
import shlex
import subprocess
import sys

import mrcfile
import numpy as np
import pytest
import starfile
from cryounet.io.coordinates import read_star_index

from cryounet_plugin import engine as E
from cryounet_plugin.constants import GPU_PLACEHOLDER

PLUGIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- the one door
def _importsEngine(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "cryounet" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "cryounet":
            return True
    return False


def test_only_the_door_imports_the_engine():
    importers = []
    for folder, dirs, files in os.walk(PLUGIN):
        dirs[:] = [d for d in dirs if d not in ("tests", "__pycache__")]
        importers += [os.path.relpath(os.path.join(folder, f), PLUGIN) for f in files
                      if f.endswith(".py") and _importsEngine(os.path.join(folder, f))]
    assert importers == ["engine.py"]


def test_the_door_finds_engine_imports(tmp_path):
    """The check above is not blind: it sees every spelling of an engine import."""
    for text in ("import cryounet", "import cryounet.io.mrc as m", "from cryounet import config",
                 "from cryounet.io.mrc import read_micrograph", "def f():\n    from cryounet import x"):
        path = tmp_path / "m.py"
        path.write_text(text + "\n")
        assert _importsEngine(str(path)), text
    (tmp_path / "ok.py").write_text("from . import engine\nimport cryounet_plugin\n")
    assert not _importsEngine(str(tmp_path / "ok.py"))


def test_the_door_and_the_plugin_constants_import_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import cryounet_plugin.engine, cryounet_plugin.constants, cryounet_plugin.convert\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_choice_lists_are_the_engines():
    from cryounet import config
    from cryounet_plugin import constants as K

    assert E.ARCHITECTURES == list(config.ARCHITECTURES) and K.ARCHITECTURES is E.ARCHITECTURES
    assert E.LOSSES == list(config.LOSSES) and E.AUGMENTATIONS == list(config.AUGMENT_PRESETS)
    assert E.SEPARATIONS == list(config.SEPARATION_MODES) and K.SEPARATIONS[K.SEPARATION_AUTO] == "auto"
    assert E.TARGET_SHAPES == list(config.TARGET_SHAPES) and K.TARGET_SHAPES[K.TARGET_DISK] == "disk"
    assert E.SHAPE_RADII == config.SHAPE_RADII
    assert E.SHAPE_RADII["disk"] == config.TargetConfig().positive_radius  # the form's disk is the default
    assert E.CROWDED_SHARE == config.CROWDED_SHARE and E.CROWDED_DISTANCE == 2 * config.TargetConfig().ignore_radius
    assert K.ARCHITECTURES[K.ARCH_ATTENTION_UNET] == "attention_unet"
    assert K.LOSSES[K.LOSS_FOCAL_DICE] == "focal_dice" and K.AUGMENTATIONS[K.AUGMENT_LIGHT] == "light"
    assert E.CONFIG_SECTIONS == ("preprocess", "target", "model", "loss", "augment", "train", "pick", "refine")


# --------------------------------------------------------------------------- command line
def test_command_line_with_gpu_placeholder():
    program, arguments = E.engineCommandLine("/opt/py env/python", "pick",
                                             ["--output", "/a b/50%", "--device", GPU_PLACEHOLDER],
                                             GPU_PLACEHOLDER)
    assert program == "'/opt/py env/python'"
    assert arguments == "-m cryounet pick --output '/a b/50%%' --device '%(GPU)s'"
    assert arguments % {"GPU": "1"} == "-m cryounet pick --output '/a b/50%' --device '1'"


def test_recorded_command_line_is_the_run_command_with_the_gpu():
    args = ["--output", "/a b/50%", "--device", GPU_PLACEHOLDER]
    recorded = E.recordedCommandLine("python3", "train", args, GPU_PLACEHOLDER, 2)
    assert recorded == "python3 -m cryounet train --output '/a b/50%' --device 2\n"
    program, arguments = E.engineCommandLine("python3", "train", args, GPU_PLACEHOLDER)
    # what the step executor runs, once it has put the GPU in, is the same command
    assert shlex.split(recorded) == shlex.split("%s %s" % (program, arguments % {"GPU": "2"}))
    assert E.recordedCommandLine("python3", "pick", ["--device", "cpu"]) == \
        "python3 -m cryounet pick --device cpu\n"


def test_recorded_command_line_runs(tmp_path):
    """The .cmd record is a working command: it reaches the engine's argument parser."""
    line = E.recordedCommandLine(sys.executable, "pick", ["--version-of-nothing"])
    proc = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "cryounet pick: error:" in proc.stderr


# --------------------------------------------------------------------------- rules
def test_box_and_diameter_rule_round_trip():
    assert E.boxSizeFromDiameter(24) == 36 and E.boxSizeFromDiameter(25) == 38
    for diameter in (10, 24, 30, 60, 108, 200):
        assert E.diameterFromBoxSize(E.boxSizeFromDiameter(diameter)) == pytest.approx(diameter, abs=1.34)
    assert E.diameterFromBoxSize(E.boxSizeFromDiameter(24)) == 24


def test_picking_threshold_rule(tmp_path):
    plain = writeModel(str(tmp_path / "plain"), threshold=0.4)
    tta = writeModel(str(tmp_path / "tta"), threshold=0.4, threshold_tta=0.3)
    assert E.pickingThreshold([tta], tta=False) == pytest.approx(0.4)
    assert E.pickingThreshold([tta], tta=True) == pytest.approx(0.3)
    assert E.pickingThreshold([tta, plain], tta=True) == pytest.approx(0.35)  # plain falls back
    assert E.pickingThreshold([tta], tta=True, explicit=0.7) == pytest.approx(0.7)
    assert E.pickingThreshold([tta], True, None, {"pick": {"threshold": 0.55}}) == pytest.approx(0.55)
    configured = writeModel(str(tmp_path / "configured"), threshold=0.4,
                            config={"pick": {"threshold": 0.6}})
    assert E.pickingThreshold([configured], tta=True) == pytest.approx(0.6)
    assert E.thresholdArgument(None) == "auto" and E.thresholdArgument(0.25) == "0.250000"
    with pytest.raises(ValueError, match="does not exist"):
        E.pickingThreshold([str(tmp_path / "missing")], tta=True)


def test_calibration_fold_errors_use_the_engines_split_rule():
    # 5 labelled micrographs at a 0.2 validation fraction: 1 held out, 4 to share into folds
    assert E.calibrationFoldErrors(0, 5, 0.2) == []
    assert E.calibrationFoldErrors(5, 5, 0.2) == []
    errors = E.calibrationFoldErrors(6, 5, 0.2)
    assert len(errors) == 1 and "use at most 5 folds" in errors[0] and "1 are held out" in errors[0]
    # half held out: 5 of 10 train, so 6 folds at most
    assert E.calibrationFoldErrors(6, 10, 0.5) == [] and E.calibrationFoldErrors(7, 10, 0.5)


def test_resumable_training(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    assert not E.resumableTraining(str(folder))
    (folder / ".cryounet-output.json").write_text('{"command": "train", "complete": false}')
    assert not E.resumableTraining(str(folder))  # no checkpoint yet: nothing to resume
    (folder / "checkpoint.pt").write_bytes(b"x")
    assert E.resumableTraining(str(folder))
    (folder / ".cryounet-output.json").write_text('{"command": "train", "complete": true}')
    assert not E.resumableTraining(str(folder))


def test_check_micrograph(tmp_path):
    good = str(tmp_path / "good.mrc")
    with mrcfile.new(good) as handle:
        handle.set_data(np.zeros((40, 60), np.float32))
    assert E.checkMicrograph(good) is None and E.micrographShape(good) == (40, 60)
    single = str(tmp_path / "single.mrcs")
    with mrcfile.new(single) as handle:
        handle.set_data(np.ones((1, 8, 8), np.float32))
    assert E.checkMicrograph(single) is None
    truncated = str(tmp_path / "trunc.mrc")
    with open(good, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read()[:2000])
    assert E.checkMicrograph(truncated).startswith("truncated: ")
    assert E.micrographShape(truncated) is None
    tiff = tmp_path / "image.tif"
    tiff.write_bytes(b"II*\0")
    assert "is not an MRC micrograph" in E.checkMicrograph(str(tiff))
    stack = str(tmp_path / "stack.mrcs")
    with mrcfile.new(stack) as handle:
        handle.set_data(np.zeros((3, 8, 8), np.float32))
    assert "3 sections" in E.checkMicrograph(stack)
    with pytest.raises(ValueError, match="truncated"):
        E.readMicrograph(truncated)


# --------------------------------------------------------------------------- STAR
def test_star_coordinates_roundtrip_and_starfile(tmp_path):
    xy = np.array([[10.25, 20.5], [300.0, 7.75], [0.0, 1023.0]])
    scores = np.array([0.91, 0.42, 0.66])
    spread = np.array([0.01, 0.2, 0.05])
    path = tmp_path / "mic.star"
    E.writeStarPicks(str(path), xy, scores, spread)
    picks = E.readCoordinates(str(path))
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
    E.writeStarPicks(str(path), [(1, 2)])
    picks = E.readCoordinates(str(path))
    xy, scores, spread = picks.xy, picks.scores, picks.uncertainty
    assert xy.tolist() == [[1, 2]] and scores.tolist() == [1.0] and spread is None
    empty = tmp_path / "empty.star"
    E.writeStarPicks(str(empty), np.zeros((0, 2)))
    xy = E.readCoordinates(str(empty)).xy
    assert xy.shape == (0, 2)
    blank = tmp_path / "blank.star"
    blank.write_text("")  # not CryoUNet's "no particles" (the loop without rows): refused, by name
    with pytest.raises(ValueError, match="blank.star: empty file, not a STAR coordinate file"):
        E.readCoordinates(str(blank))


def test_star_errors(tmp_path):
    bad = tmp_path / "bad.star"
    bad.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2 3\n")
    # the file named, the line, and the field counts of the bad row
    with pytest.raises(ValueError, match=r"bad\.star: line 5: 3 values for the 2 labels"):
        E.readCoordinates(str(bad))
    other = tmp_path / "other.star"
    other.write_text("data_x\nloop_\n_rlnImageName #1\nabc\n")
    with pytest.raises(ValueError, match="no _rlnCoordinateX"):
        E.readCoordinates(str(other))


def test_star_reads_relion_style_multiblock(tmp_path):
    path = tmp_path / "r.star"
    path.write_text("# RELION\ndata_general\n_rlnImageSizeX 100\n\ndata_particles\nloop_\n"
                    "_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    '"mic 1.mrc" 5.0 6.0\n"mic 1.mrc" 7 8\n')
    picks = E.readCoordinates(str(path))
    xy, scores = picks.xy, picks.scores
    assert xy.tolist() == [[5.0, 6.0], [7.0, 8.0]] and scores is None
    # picks of two micrographs in one file are refused, not mixed
    path.write_text(path.read_text().replace('"mic 1.mrc" 7 8', "mic2.mrc 7 8"))
    with pytest.raises(ValueError, match="r.star: holds picks of 2 micrographs"):
        E.readCoordinates(str(path))


def test_star_index_roundtrip(tmp_path):
    path = tmp_path / E.COORDS_INDEX
    entries = [("Runs/1/extra/mic 1.mrc", "Runs/2/extra/coordinates/mic_1.star"),
               ("b.mrc", "b.star")]
    E.writeStarIndex(str(path), entries)
    assert read_star_index(str(path)) == {"mic_1": entries[0][0], "b": entries[1][0]}
    table = starfile.read(path)
    assert list(table["rlnMicrographName"]) == [e[0] for e in entries]
    assert list(table["rlnMicrographCoordinates"]) == [e[1] for e in entries]


def test_other_coordinate_formats(tmp_path):
    box = tmp_path / "m.box"
    box.write_text("10 20 30 30\n100 50 30 30\n")
    picks = E.readCoordinates(str(box))
    xy, scores = picks.xy, picks.scores
    assert xy.tolist() == [[25, 35], [115, 65]] and scores is None
    csv = tmp_path / "m.csv"
    csv.write_text("x,y,score\n1.5,2.5,0.9\n3,4,0.1\n")
    picks = E.readCoordinates(str(csv))
    xy, scores = picks.xy, picks.scores
    assert xy.tolist() == [[1.5, 2.5], [3, 4]] and scores.tolist() == [0.9, 0.1]
    unknown = tmp_path / "m.xyz"
    unknown.write_text("1 2\n")  # the engine checks that a file exists before its format
    with pytest.raises(ValueError, match="unknown coordinate format"):
        E.readCoordinates(str(unknown))
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\nfoo bar\n")
    with pytest.raises(ValueError, match="line 2 is not numeric"):
        E.readCoordinates(str(bad))


def test_find_coordinate_files(tmp_path):
    for name in ("a.star", "b.star", "coordinates.star", "notes.md", "c.box"):
        (tmp_path / name).write_text("")
    found = E.findCoordinateFiles(str(tmp_path), "*")
    assert sorted(found) == ["a", "b", "c"]  # the index and other files are ignored
    assert sorted(E.findCoordinateFiles(str(tmp_path), "*.star")) == ["a", "b"]
    (tmp_path / "a.box").write_text("")
    with pytest.raises(ValueError, match="several coordinate files for micrograph 'a'"):
        E.findCoordinateFiles(str(tmp_path), "*")
    (tmp_path / "a.box").unlink()
    (tmp_path / "d_autopick.star").write_text("")  # RELION's names match their micrograph
    (tmp_path / "e_picks.cbox").write_text("")
    assert sorted(E.findCoordinateFiles(str(tmp_path), "*")) == ["a", "b", "c", "d", "e"]
    # a file named after a micrograph of the set stays that micrograph's
    assert "e_picks" in E.findCoordinateFiles(str(tmp_path), "*", ["e", "e_picks"])


# --------------------------------------------------------------------------- model folders
def writeModel(folder, **overrides):
    """A model folder with a real config.json and placeholder weights (enough for the door)."""
    os.makedirs(folder, exist_ok=True)
    cfg = {"format": "cryounet-model", "format_version": 1, "diameter_px": 24.0,
           "threshold": 0.42, "validation": {"precision": 0.8, "recall": 0.7, "f1": 0.75,
                                             "ap": 0.77},
           "config": {"model": {"architecture": "attention_unet"}}, "cryounet_version": "0.1.0"}
    cfg.update(overrides)
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump(cfg, handle)
    # the smallest complete safetensors file: its header (one float32 tensor), then the tensor
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    with open(os.path.join(folder, "model.safetensors"), "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    return folder


def test_read_model_info(tmp_path):
    folder = writeModel(str(tmp_path / "m"))
    info = E.readModelInfo(folder)
    assert info == {"diameter": 24.0, "threshold": 0.42, "threshold_tta": None,
                    "architecture": "attention_unet", "target_shape": "disk", "target_radius": 0.2,
                    "precision": 0.8, "recall": 0.7, "f1": 0.75, "ap": 0.77, "version": "0.1.0"}
    gaussian = writeModel(str(tmp_path / "g"), config={"target": {"shape": "gaussian", "positive_radius": 0.1}})
    assert (E.readModelInfo(gaussian)["target_shape"], E.readModelInfo(gaussian)["target_radius"]) == ("gaussian", 0.1)
    assert E.checkModelFolder(folder) == []
    assert E.readModelInfo(writeModel(str(tmp_path / "t"), threshold_tta=0.3))["threshold_tta"] == 0.3
    with open(os.path.join(folder, "model.safetensors"), "wb") as handle:
        handle.write(b"\0" * 16)  # not weights: refused by the form, before any engine run
    assert "is not a safetensors weights file" in E.checkModelFolder(folder)[0]


def test_model_folder_problems(tmp_path):
    assert "does not exist" in E.checkModelFolder(str(tmp_path / "none"))[0]
    folder = writeModel(str(tmp_path / "m"), format="something-else")
    assert "not a CryoUNet model" in E.checkModelFolder(folder)[0]
    folder = writeModel(str(tmp_path / "m2"), diameter_px=-3)
    assert "diameter_px must be a positive number" in E.checkModelFolder(folder)[0]
    folder = writeModel(str(tmp_path / "m3"))
    os.remove(os.path.join(folder, "model.safetensors"))
    assert E.checkModelFolder(folder) == ["model folder %s has no model.safetensors" % folder]
    with open(os.path.join(writeModel(str(tmp_path / "m4")), "config.json"), "w") as handle:
        handle.write("{not json")
    assert "not valid JSON" in E.checkModelFolder(str(tmp_path / "m4"))[0]


def test_histories(tmp_path):
    folder = str(tmp_path)
    assert E.readHistory(folder) == [] and E.readValidationCurve(folder) is None
    (tmp_path / "refine_history.json").write_text(json.dumps([
        {"round": 0, "positive_threshold": None, "negative_threshold": None,
         "pseudo_positives": 0, "micrographs_used": 0, "valid_f1": 0.5},
        {"round": 1, "positive_threshold": 0.98, "negative_threshold": 0.02,
         "pseudo_positives": 37, "micrographs_used": 4, "valid_f1": 0.61}]))
    assert [r["round"] for r in E.readRefineHistory(folder)] == [0, 1]
    (tmp_path / "validation_curve.json").write_text('{"thresholds": [0.5]}')
    with pytest.raises(ValueError, match="has no 'precision'"):
        E.readValidationCurve(folder)


def test_extra_config():
    assert E.parseExtraConfig("  ") == {}
    assert E.parseExtraConfig('{"train": {"epochs": 2}}') == {"train": {"epochs": 2}}
    for text, message in (("{bad", "not valid JSON"), ("[1]", "must be a JSON object"),
                          ('{"trian": {}}', "unknown key\\(s\\) trian"),
                          ('{"train": 3}', "must be a JSON object of sections"),
                          ('{"train": {"epochz": 3}}', "unknown key\\(s\\) epochz"),
                          ('{"train": {"epochs": "many"}}', "expected an integer"),
                          ('{"pick": {"tile_overlap": 1200}}', "tile_overlap must be smaller")):
        with pytest.raises(ValueError, match=message):
            E.parseExtraConfig(text)
    base = {"train": {"epochs": 40, "seed": 0}, "model": {"depth": 3}}
    merged = E.mergeConfig(base, {"train": {"epochs": 2}, "pick": {"tta": True}})
    assert merged == {"train": {"epochs": 2, "seed": 0}, "model": {"depth": 3},
                      "pick": {"tta": True}}
    assert base["train"]["epochs"] == 40  # not modified




def test_general_model_is_resolved_by_the_engine_rule(tmp_path):
    general = E.generalModelFolder()
    assert E.resolveModelFolder(E.GENERAL_MODEL) == general
    assert E.resolveModelFolder(str(tmp_path)) == str(tmp_path)
    assert E.isGeneralModel(general) and E.isGeneralModel(E.GENERAL_MODEL)
    assert not E.isGeneralModel(str(tmp_path)) and not E.isGeneralModel("")
    assert E.checkModelFolder(general) == []
    assert os.path.isfile(os.path.join(general, "model.onnx"))  # picks on the CPU without PyTorch


def test_gpu_presence_is_the_engines_torch_free_rule():
    from cryounet.device_probe import cuda_impossible

    assert E.cudaImpossible() is cuda_impossible()


def test_model_file_given_for_its_folder(tmp_path):
    folder = writeModel(str(tmp_path / "m"))
    weights = os.path.join(folder, "model.safetensors")
    assert E.resolveModelFolder(weights) == folder  # a model folder's file names the folder
    problems = E.checkModelFolder(weights)
    assert problems == ["%s is a file; give the model folder that holds it (%s)" % (weights, folder)]
    with pytest.raises(ValueError, match="is a file; give the model folder that holds it"):
        E.readModelInfo(weights)


def test_automatic_start_is_the_engines_rule():
    from cryounet.io.model_folder import AUTO_INIT_BELOW, automatic_start
    from cryounet_plugin.constants import GENERAL_START_BELOW

    assert GENERAL_START_BELOW == E.AUTO_START_BELOW == AUTO_INIT_BELOW
    assert automatic_start(GENERAL_START_BELOW - 1) == E.GENERAL_MODEL
    assert automatic_start(GENERAL_START_BELOW) is None
