"""Constants of the CryoUNet Scipion plugin: variable names, file names of protocol runs, choice
indices.

The names both halves share (model and pick folder files, suffixes, choice lists) are the engine's,
reached through :mod:`cryounet_plugin.engine`. Nothing here imports Scipion, so the pure helpers
(``convert``, wizard logic, plotting) and their tests can use these names without a project.
"""
from .engine import ARCHITECTURES, AUGMENTATIONS, LOSSES, SEPARATIONS, TARGET_SHAPES  # noqa: F401 (the form lists)
from .engine import AUTO_START_BELOW

# ------------------------------------------------------------------ plugin variables
#: Interpreter that runs the engine (``<python> -m cryounet``); default: the engine environment's
#: (``scipion3 installb cryounet``) when installed, else the one Scipion runs in.
CRYOUNET_PYTHON = "CRYOUNET_PYTHON"
#: Folder of the engine environment ``defineBinaries`` creates (relative to Scipion's EM_ROOT).
CRYOUNET_HOME = "CRYOUNET_HOME"
#: What pip installs as PyTorch in the engine environment (a requirement and pip options).
CRYOUNET_TORCH = "CRYOUNET_TORCH"
#: Default of CRYOUNET_TORCH: the release the engine is tested with. PyPI's Linux wheel of it is a
#: CUDA build; a CPU-only site adds ``--index-url https://download.pytorch.org/whl/cpu``.
DEFAULT_TORCH = "torch==2.13.0"
#: Name of the engine environment as a Scipion binary (``scipion3 installb cryounet``).
ENGINE_BINARY = "cryounet"
#: Its interpreter and its installation marker, relative to CRYOUNET_HOME.
ENGINE_ENV_PYTHON = "venv/bin/python"
ENGINE_ENV_DONE = "engine_installed"
#: Folder holding CryoUNet model folders (browsed by the import-model protocol).
CRYOUNET_MODELS = "CRYOUNET_MODELS"
#: Default of CRYOUNET_MODELS, relative to Scipion's EM_ROOT (software/em).
DEFAULT_MODELS_FOLDER = "cryounet-models"

# ------------------------------------------------------------------ engine command line
CMD_TRAIN = "train"
CMD_REFINE = "refine"
CMD_PICK = "pick"
CMD_POSTPROCESS = "postprocess"
#: Placeholder the Scipion step executor replaces by the GPU ids assigned to a step.
GPU_PLACEHOLDER = "%(GPU)s"
DEVICE_CPU = "cpu"

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
#: Per-micrograph picking records (which STAR file, or why it was skipped).
RECORDS_FOLDER = "records"
#: Picking batches (links, @list and command line of each engine run).
BATCHES_FOLDER = "batches"
MODEL_FOLDER = "model"
MODEL_MEMBER_FOLDER = "model_%d"
INPUT_PICKS_FOLDER = "input_picks"

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
# The lists are the engine's (cryounet.config); the indices name the form defaults.
ARCH_UNET = ARCHITECTURES.index("unet")
ARCH_ATTENTION_UNET = ARCHITECTURES.index("attention_unet")
ARCH_RESIDUAL_UNET = ARCHITECTURES.index("residual_unet")
ARCH_EFFICIENT_UNET = ARCHITECTURES.index("efficient_unet")

LOSS_BCE = LOSSES.index("bce")
LOSS_FOCAL = LOSSES.index("focal")
LOSS_DICE = LOSSES.index("dice")
LOSS_BCE_DICE = LOSSES.index("bce_dice")
LOSS_FOCAL_DICE = LOSSES.index("focal_dice")

AUGMENT_NONE = AUGMENTATIONS.index("none")
AUGMENT_LIGHT = AUGMENTATIONS.index("light")
AUGMENT_STRONG = AUGMENTATIONS.index("strong")

SEPARATION_AUTO = SEPARATIONS.index("auto")

TARGET_DISK = TARGET_SHAPES.index("disk")

#: Where training starts (the train protocol's "Start from").
START_CHOICES = ["automatic", "scratch", "general model", "a model", "the model that picked them"]
START_AUTO = 0
START_SCRATCH = 1
START_GENERAL = 2
START_MODEL = 3
#: The model of the CryoUNet pick run the input coordinates come from (the correction loop).
START_PICKER = 4
#: "automatic" starts from the general model below this many labelled micrographs: the engine's
#: rule (``cryounet train --init auto``; a pretrained start helped with one labelled micrograph, not
#: with several).
GENERAL_START_BELOW = AUTO_START_BELOW

#: Where the pick protocol's models come from.
MODEL_SOURCES = ["trained or imported", "general model", "models folder"]
MODELS_INPUT = 0
MODELS_GENERAL = 1
MODELS_LIBRARY = 2

DIAMETER_UNITS = ["pixels", "Angstrom"]
UNIT_PIXELS = 0
UNIT_ANGSTROM = 1

#: Threshold form value meaning "automatic" (the engine's rule: configured, else calibrated).
THRESHOLD_AUTO = -1.0
#: Box size value meaning "derive from the particle diameter" (the engine's box rule).
BOX_SIZE_AUTO = 0

#: Relative difference of sampling rates above which pixel sizes are considered different.
SAMPLING_TOLERANCE = 0.02
#: Largest ensemble the training protocol accepts.
MAX_ENSEMBLE = 10
