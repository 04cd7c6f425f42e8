"""Constants of the CryoUNet Scipion plugin: variable names, file names, choice lists and indices.

Nothing here imports Scipion, so the pure helpers (``convert``, wizard logic, plotting) and their
tests can use these names without a Scipion installation.
"""

# ------------------------------------------------------------------ plugin variables
#: Interpreter that runs the engine (``<python> -m cryounet``); default: the one Scipion runs in.
CRYOUNET_PYTHON = "CRYOUNET_PYTHON"
#: Folder holding CryoUNet model folders (browsed by the import-model protocol).
CRYOUNET_MODELS = "CRYOUNET_MODELS"
#: Default of CRYOUNET_MODELS, relative to Scipion's EM_ROOT (software/em).
DEFAULT_MODELS_FOLDER = "cryounet-models"

# ------------------------------------------------------------------ engine command line
ENGINE_MODULE = "cryounet"
CMD_TRAIN = "train"
CMD_REFINE = "refine"
CMD_PICK = "pick"
CMD_POSTPROCESS = "postprocess"
#: Placeholder the Scipion step executor replaces by the GPU ids assigned to a step.
GPU_PLACEHOLDER = "%(GPU)s"
DEVICE_CPU = "cpu"

# ------------------------------------------------------------------ model folder layout
MODEL_FORMAT = "cryounet-model"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
MODEL_HISTORY = "history.json"
MODEL_CURVE = "validation_curve.json"
REFINE_HISTORY = "refine_history.json"
#: Engine files of a model folder that a finished model does not need (resume checkpoints);
#: the import-model protocol does not copy them.
MODEL_RESUME_FILES = ("checkpoint.pt",)
#: Files a model folder must hold to be usable.
MODEL_REQUIRED_FILES = (MODEL_CONFIG, MODEL_WEIGHTS)

# ------------------------------------------------------------------ files written by protocols
#: Engine configuration (JSON) written in the run's extra folder; reproduces the run with the CLI.
ENGINE_CONFIG = "cryounet_%s.json"
#: The exact engine command line, next to its config (``cryounet_<step>.cmd``).
ENGINE_COMMAND = "cryounet_%s.cmd"
#: What a run's conversion step found (diameter, counts, list and folder paths), for later steps
#: and summaries.
INPUTS_INFO = "cryounet_inputs.json"
#: Micrograph list handed to the engine as ``@list``.
MICS_LIST = "micrographs_%s.txt"
MICS_FOLDER = "micrographs"
COORDS_FOLDER = "coordinates"
#: Index of per-micrograph coordinate files (RELION 4/5 autopick layout).
COORDS_INDEX = "coordinates.star"
#: The engine's list of micrographs it skipped, with reasons (in a pick output folder).
ENGINE_SKIPPED = "skipped.json"
#: Per-micrograph picking records (which STAR file, or why it was skipped).
RECORDS_FOLDER = "records"
#: Picking batches (links, @list and command line of each engine run).
BATCHES_FOLDER = "batches"
MODEL_FOLDER = "model"
MODEL_MEMBER_FOLDER = "model_%d"
INPUT_PICKS_FOLDER = "input_picks"
#: Suffixes of micrograph files the engine reads.
MRC_SUFFIXES = (".mrc", ".mrcs")

# ------------------------------------------------------------------ coordinate attributes
#: Score (probability) of a CryoUNet pick, stored on each output Coordinate.
SCORE_ATTR = "_cryounetScore"
#: Ensemble spread of the probability (only with several models).
SPREAD_ATTR = "_cryounetScoreSpread"
#: Score read from an imported STAR file (its _rlnAutopickFigureOfMerit column).
IMPORTED_SCORE_ATTR = "_rlnAutopickFigureOfMerit"
#: Score attributes of other pickers recognised by the post-processing protocol, in order.
KNOWN_SCORE_ATTRS = (SCORE_ATTR, IMPORTED_SCORE_ATTR, "_topazScore", "_cryoloScore",
                     "_xmipp_cost", "_score")

# ------------------------------------------------------------------ choices (index constants)
#: Architectures of cryounet.models (hard-coded so the GUI never imports torch; a test checks
#: them against the engine registry).
ARCHITECTURES = ["unet", "attention_unet", "residual_unet", "efficient_unet"]
ARCH_UNET = 0
ARCH_ATTENTION_UNET = 1
ARCH_RESIDUAL_UNET = 2
ARCH_EFFICIENT_UNET = 3

LOSSES = ["bce", "focal", "dice", "bce_dice", "focal_dice"]
LOSS_BCE = 0
LOSS_FOCAL = 1
LOSS_DICE = 2
LOSS_BCE_DICE = 3
LOSS_FOCAL_DICE = 4

AUGMENTATIONS = ["none", "light", "strong"]
AUGMENT_NONE = 0
AUGMENT_LIGHT = 1
AUGMENT_STRONG = 2

DIAMETER_UNITS = ["pixels", "Angstrom"]
UNIT_PIXELS = 0
UNIT_ANGSTROM = 1

#: Threshold value meaning "use the threshold calibrated on the validation set".
THRESHOLD_AUTO = -1.0
#: Box size value meaning "derive from the particle diameter".
BOX_SIZE_AUTO = 0
#: Default box size = this factor x particle diameter (rounded up to an even number of pixels).
BOX_FACTOR = 1.5

#: Sections of the engine configuration (cryounet.config.CryoUNetConfig).
ENGINE_SECTIONS = ("preprocess", "target", "model", "loss", "augment", "train", "pick", "refine")

#: Relative difference of sampling rates above which pixel sizes are considered different.
SAMPLING_TOLERANCE = 0.02
#: Largest ensemble the training protocol accepts.
MAX_ENSEMBLE = 10
