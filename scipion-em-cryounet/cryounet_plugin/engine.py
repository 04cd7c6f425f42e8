"""The plugin's one door to the CryoUNet engine.

This is the only plugin module that imports ``cryounet``, and it imports only the engine's
torch-free ground (``cryounet.config``, ``cryounet.errors``, ``cryounet.io``, ``cryounet.render`` and the
diameter estimate of ``cryounet.analysis``), so Scipion's GUI never loads torch. Every rule the two halves
share lives once, in the engine, and reaches the
plugin here: file names of model and pick folders, the micrograph and coordinate suffixes, the MRC
header check, the picking-threshold rule, the box/diameter rule, the choice lists of the forms, the
validation of engine options, the engine command line and how picks are drawn on a micrograph.

Nothing here imports Scipion. Functions use Scipion's camelCase and raise ``ValueError`` with the
engine's own message for a bad file or value, as the protocols' form checks expect.
"""
import dataclasses
import functools
import json
import os
import shlex

import cryounet as _cryounet
from cryounet import __version__ as VERSION
from cryounet import config as _config
from cryounet import device_probe as _device_probe
from cryounet import render as _render
from cryounet.analysis import diameter as _diameterRules
from cryounet.analysis import diameter_inputs as _diameter
from cryounet.errors import CryoUNetError
from cryounet.io import atomic as _atomic
from cryounet.io import coordinates as _coordinates
from cryounet.io import micrographs as _micrographs
from cryounet.io import model_folder as _models
from cryounet.io import mrc as _mrc
from cryounet.io import outputs as _outputs
from cryounet.io import picks_folder as _picks
from cryounet.postprocess import threshold_rules as _thresholdRules

# ------------------------------------------------------------------ choice lists (engine config)
ARCHITECTURES = list(_config.ARCHITECTURES)
LOSSES = list(_config.LOSSES)
AUGMENTATIONS = list(_config.AUGMENT_PRESETS)
SEPARATIONS = list(_config.SEPARATION_MODES)
TARGET_SHAPES = list(_config.TARGET_SHAPES)
#: ``target.positive_radius`` the train form sends with each target shape (diameters).
SHAPE_RADII = dict(_config.SHAPE_RADII)
#: ``target.separation = "auto"``: on when this share of the picks have a neighbour closer than
#: :data:`CROWDED_DISTANCE` diameters (two ignore radii of the default targets).
CROWDED_SHARE = _config.CROWDED_SHARE
CROWDED_DISTANCE = _config.TargetConfig().crowded_distance
#: Sections of the engine configuration (what "extra engine options" may hold).
CONFIG_SECTIONS = tuple(f.name for f in dataclasses.fields(_config.CryoUNetConfig))

# ------------------------------------------------------------------ file names and suffixes
ENGINE_MODULE = "cryounet"
MODEL_CONFIG = _models.CONFIG_NAME
MODEL_WEIGHTS = _models.WEIGHTS_NAME
REFINE_HISTORY = _models.REFINE_HISTORY_NAME
#: Files of a model folder a finished model does not need (a copy leaves them out).
MODEL_RESUME_FILES = _models.RESUME_FILES
#: Index of per-micrograph coordinate files in a pick folder (RELION 4/5 autopick layout).
COORDS_INDEX = _coordinates.INDEX_NAME
MICROGRAPH_SUFFIXES = _micrographs.MICROGRAPH_SUFFIXES
#: Box size = BOX_FACTOR x particle diameter, and back.
BOX_FACTOR = _coordinates.BOX_FACTOR
#: The name of the general model shipped with the engine in every model option of the engine's
#: command line (``--model``, ``--init``).
GENERAL_MODEL = _models.GENERAL_NAME
#: "Start from: automatic" starts from the general model below this many labelled micrographs
#: (the engine's rule, ``cryounet train --init auto``).
AUTO_START_BELOW = _models.AUTO_INIT_BELOW
#: Distribution name of the engine (the engine environment installs ``<it>[engine]``).
ENGINE_DISTRIBUTION = "cryounet"


def _asValueError(function):
    """Let an engine error reach the protocols as ValueError, with the engine's message."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except CryoUNetError as exc:
            raise ValueError(str(exc)) from None
    return wrapper


# ================================================================== command line
def engineCommandLine(python, subcommand, args, gpuPlaceholder=None):
    """``(program, arguments)`` of ``<python> -m cryounet <subcommand> <args>``, shell-quoted.

    When ``gpuPlaceholder`` (Scipion's ``%(GPU)s``) is among the arguments it is kept unquoted for
    the step executor to fill in, and every other ``%`` is doubled (the executor %-formats the
    arguments).
    """
    args = [str(a) for a in args]
    hasGpu = gpuPlaceholder is not None and gpuPlaceholder in args
    quoted = []
    for arg in ["-m", ENGINE_MODULE, subcommand] + args:
        if hasGpu and arg == gpuPlaceholder:
            quoted.append("'%s'" % gpuPlaceholder)
        else:
            arg = shlex.quote(arg)
            quoted.append(arg.replace("%", "%%") if hasGpu else arg)
    return shlex.quote(str(python)), " ".join(quoted)


def recordedCommandLine(python, subcommand, args, gpuPlaceholder=None, gpuId=0):
    """The command line a run's ``.cmd`` record keeps: the same as :func:`engineCommandLine`, with
    ``gpuId`` in place of the GPU placeholder, ready to paste into a shell."""
    shown = [str(gpuId) if gpuPlaceholder is not None and str(a) == gpuPlaceholder else a for a in args]
    return "%s %s\n" % engineCommandLine(python, subcommand, shown)


# ================================================================== engine configuration
def parseExtraConfig(text):
    """The "extra engine options" JSON as a dict ({} for blank text), checked with the engine's own
    configuration loader: an unknown section or key, a wrong type or a value out of range is a
    ValueError naming it."""
    text = (text or "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError("extra engine options are not valid JSON (%s)" % exc) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError('extra engine options must be a JSON object of sections, such as '
                         '{"train": {"patience": 5}}')
    validateConfig(data, "extra engine options")
    return data


@_asValueError
def validateConfig(config, source="engine configuration"):
    """Check a (partial) engine configuration dict as the engine will when it runs."""
    _config.CryoUNetConfig().updated(config, source=source)


def batchSharingErrors(batchSize, processes, what):
    """The engine's refusal of a batch that ``processes`` training processes cannot share out
    equally, as a list of messages (empty when it can)."""
    try:
        _config.check_batch_shared(batchSize, processes, what)
    except CryoUNetError as exc:
        return [str(exc)]
    return []


def calibrationFoldErrors(folds, labelledMicrographs, validFraction):
    """The engine's refusal of ``train.calibration_folds`` that the training micrographs left after
    the validation split cannot fill, as a list of messages (empty when they can)."""
    training = labelledMicrographs - _config.held_out_count(labelledMicrographs, validFraction)
    try:
        _config.check_calibration_folds(folds, training)
    except CryoUNetError as exc:
        return ["%s (of %d labelled micrographs, %d are held out for validation)"
                % (exc, labelledMicrographs, labelledMicrographs - training)]
    return []


def mergeConfig(base, extra):
    """A copy of ``base`` where the sections/keys of ``extra`` override (two levels deep)."""
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in (extra or {}).items():
        merged.setdefault(section, {}).update(values)
    return merged


# ================================================================== model folders
def checkModelFolder(folder):
    """Problems that make ``folder`` unusable as a CryoUNet model (an empty list when fine)."""
    return _models.check_model_folder(folder or "")


@_asValueError
def readModelInfo(folder):
    """Summary of a model folder's ``config.json``: dict with ``diameter`` (px), ``threshold``,
    ``threshold_tta``, ``architecture``, ``target_shape`` and ``target_radius`` (its
    ``positive_radius``, diameters), ``precision``, ``recall``, ``f1``, ``ap`` (None when unknown)
    and ``version``."""
    info = _models.read_model_info(folder)
    return {"diameter": info.diameter_px, "threshold": info.threshold,
            "threshold_tta": info.threshold_tta, "architecture": info.architecture,
            "target_shape": info.config.target.shape, "target_radius": info.config.target.positive_radius,
            "precision": info.validation.get("precision"), "recall": info.validation.get("recall"),
            "f1": info.validation.get("f1"), "ap": info.validation.get("ap"),
            "version": info.cryounet_version}


def generalModelFolder():
    """Model folder of the general model shipped with the engine (pickable as it is, and the
    training start ``--init general``).

    Raises:
        ValueError: this installation of the engine has no general model.
    """
    return str(_asValueError(_models.general_model_path)())


@_asValueError
def resolveModelFolder(model):
    """The model folder ``model`` names, by the engine's one rule: the general model's folder for
    :data:`GENERAL_MODEL`, else ``model`` itself (a path)."""
    return str(_models.resolve_model(str(model)))


def isGeneralModel(folder):
    """Whether ``folder`` is the general model shipped with the engine (it needs the user's
    particle diameter to pick)."""
    return bool(folder) and _models.is_general(str(folder))


def listModelFolders(root):
    """Names of the usable model folders in ``root`` (the CRYOUNET_MODELS library), sorted."""
    return _models.list_model_folders(root) if root else []


def engineSource():
    """What the engine environment installs: the engine's source tree when Scipion's ``cryounet``
    runs from one (a checkout installed with ``pip install -e``), else the released ``cryounet`` of
    this version. The ``engine`` extra is added by the caller."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(_cryounet.__file__)))
    if os.path.isfile(os.path.join(root, "setup.py")):
        return root
    return "%s==%s" % (ENGINE_DISTRIBUTION, VERSION)


def runCompleted(folder):
    """True when an engine command marked ``folder`` (its ``--output``) complete: its last write.
    A queue job that died, or an engine that failed where the queue does not report exit codes,
    leaves it unmarked."""
    marker = _outputs.read_marker(folder)
    return bool(marker and marker.get("complete") is True)


def resumableTraining(folder):
    """True when ``folder`` holds an interrupted ``cryounet train`` run that ``--resume`` continues."""
    marker = _outputs.read_marker(folder)
    return bool(marker and marker.get("command") == "train" and not marker.get("complete")
                and os.path.isfile(os.path.join(folder, _models.CHECKPOINT_NAME)))


readHistory = _asValueError(_models.read_history)
readMainEpochs = _asValueError(_models.read_main_epochs)
readRefineHistory = _asValueError(_models.read_refine_history)
readValidationCurve = _asValueError(_models.read_validation_curve)


@_asValueError
def pickingThreshold(modelFolders, tta, explicit=None, extraConfig=None):
    """The threshold ``cryounet pick`` will use with these models, by the engine's one rule: an
    explicit value, else ``pick.threshold`` of the first model's configuration (with the extra
    options), else the mean calibrated threshold (the one calibrated with test-time augmentation
    when ``tta``) of the networks that pick together (with the models' calibration folds when
    ``pick.folds``)."""
    if not modelFolders:
        raise CryoUNetError("no model to take the threshold from")
    first = _models.read_model_info(modelFolders[0])
    pick = first.config.updated(extraConfig or {}, "extra engine options").pick
    infos = [_models.read_model_info(folder) for folder in _models.picking_members(modelFolders, pick.folds)]
    return _models.picking_threshold(infos, tta, explicit, pick.threshold)


#: ``--threshold`` of the engine's label-free rule (the threshold read from the picks' scores).
THRESHOLD_FROM_SCORES = _thresholdRules.LABEL_FREE_RULES[0]


def pickedThreshold(picksFolder):
    """The threshold a finished pick folder's picks were cut at (its ``pick.json``), or None."""
    record = _picks.read_pick_record(picksFolder)
    return None if record is None else record.threshold


def scoreValley(scores):
    """The valley of a score histogram, for a threshold suggestion (the engine's label-free rule,
    ``cryounet postprocess --threshold otsu``: Otsu on the logit scale for probabilities, on the
    scores themselves for other pickers' scores); None when the scores cannot be split."""
    return _thresholdRules.score_valley(scores)


def thresholdArgument(value):
    """``--threshold`` value for a threshold (None = automatic)."""
    return _models.format_threshold(value)


# ================================================================== micrographs
def isMicrographName(path):
    return _micrographs.is_micrograph_name(path)


def checkMicrograph(path):
    """Why ``path`` cannot be picked or trained on (from its name and MRC header), or None."""
    return _micrographs.check_micrograph_file(path)


def micrographShape(path):
    """``(ny, nx)`` of a micrograph, or None when it cannot be read."""
    try:
        return _mrc.micrograph_shape(path)
    except CryoUNetError:
        return None


@_asValueError
def readMicrograph(path):
    """The 2D image of a micrograph (read-only, read into memory), after the engine's checks."""
    return _mrc.read_micrograph(path)


# ================================================================== coordinates
@_asValueError
def readCoordinates(path):
    """Picks of a coordinate file (``.xy``, ``.scores``, ``.uncertainty``), by its suffix."""
    return _coordinates.read_coordinates(path)


def writeStarPicks(path, xy, scores=None, spread=None):
    """Write one micrograph's picks as a RELION coordinate STAR file, atomically."""
    _coordinates.write_star_picks(path, _coordinates.Picks(xy, scores, spread))


def writeStarIndex(path, entries):
    """Write the ``coordinates.star`` index: ``[(micrograph name, coordinate file), ...]``."""
    _coordinates.write_star_index(path, entries)


@_asValueError
def findCoordinateFiles(folder, pattern="*", stems=None):
    """Coordinate files in ``folder`` matching ``pattern`` (not the index), keyed by the micrograph
    stem each belongs to (``mic.star``, ``mic_autopick.star``, ``mic.cbox``... -> ``mic``; a file
    named after one of the micrograph ``stems`` keeps that name)."""
    found = _coordinates.list_coordinate_files(folder, pattern, stems)
    return {stem: str(path) for stem, path in found.items()}


@_asValueError
def readSkipped(picksFolder):
    """``{micrograph path: reason}`` from the engine's skipped.json in a pick folder ({} when absent)."""
    return _picks.read_skipped(picksFolder)


def diameterErrors(diameterPx):
    """Why the engine would refuse a particle diameter (px), as form errors ([] when fine)."""
    try:
        _micrographs.check_diameter(diameterPx, "The particle diameter")
    except CryoUNetError as exc:
        return [str(exc)]
    return []


def boxSizeFromDiameter(diameterPx):
    """Box size (px, even) CryoUNet gives picks of this particle diameter (px)."""
    return _coordinates.box_size_for_diameter(diameterPx)


def diameterFromBoxSize(boxPx):
    """Particle diameter (px) implied by a coordinate box size (px), the inverse of the above."""
    return _coordinates.diameter_for_box_size(boxPx)


# ================================================================== machine
def cudaImpossible():
    """True when this machine certainly has no CUDA GPU (Linux without the NVIDIA driver), known
    without importing torch: the forms' 'use the GPU' default follows it."""
    return _device_probe.cuda_impossible()


@_asValueError
def estimateDiameter(micrographPaths, picks=None, boxSize=None, maxMicrographs=6):
    """The particle diameter (px of the micrographs) the engine estimates from the micrographs and,
    when given, their picks (``picks[i]``: ``(N, 2)`` x, y on ``micrographPaths[i]``) and box size:
    ``{"diameter_px", "low", "high", "confidence", "methods": [...], "report": text}``
    (``diameter_px`` None when nothing could be measured)."""
    evidence = _diameter.evidence_from_picks(micrographPaths, picks, [boxSize] if boxSize else [])
    estimate = _diameter.estimate_from(evidence, max_images=maxMicrographs)
    return dict(estimate.as_dict(), report=estimate.report())


def diameterContradiction(diameterPx, estimate):
    """Why a diameter (px) contradicts an :func:`estimateDiameter` result (the rule ``cryounet train``
    applies, without the picks' crowding), or None."""
    found = _diameterRules.DiameterEstimate(estimate["diameter_px"], estimate["low"], estimate["high"],
                                            estimate["confidence"])
    return _diameterRules.diameter_problem(float(diameterPx), found, ())


# ================================================================== files
def writeJson(path, data):
    _atomic.write_json(path, data)


def writeTextAtomic(path, text):
    _atomic.write_text_atomic(path, text)


# ================================================================== pictures
def displayImage(image, diameter, maxSize=_render.DISPLAY_SIZE):
    """A micrograph as the engine shows it: binned to at most ``maxSize`` px, low-pass filtered to the
    particle scale and contrast-stretched; ``(image in [0, 1], binning factor)``."""
    return _render.display_image(image, diameter, maxSize)


def drawPicks(figure, image, xy, diameter, scores=None, title=""):
    """Draw a micrograph with the picks on ``figure`` as ``cryounet show`` does (circles of the
    diameter coloured by score, with a colour bar); returns the axes."""
    return _render.draw_picks(figure, image, xy, diameter, scores, title)
