"""Run a CryoUNet workflow headless, in a new Scipion project, on your own data.

Two workflows ship with the plugin (``--workflow NAME``, or the path of your own exported file):

* ``train`` (the default): import micrographs -> import coordinates -> train -> pick ->
  post-process;
* ``loop``, the correction loop: import micrographs -> pick with the general model -> import the
  corrected coordinates of a few micrographs (standing in for manual picking) -> train starting from
  the model that picked them -> pick again.

Example (inside Scipion's environment, e.g. ``scipion3 run python -m ...``)::

    python -m cryounet_plugin.workflows.run_workflow --project my_picking \\
        --micrographs /data/mics --pattern '*.mrc' --sampling-rate 1.06 \\
        --coordinates /data/manual_picks --box-size 180 --gpus 0

    python -m cryounet_plugin.workflows.run_workflow --workflow loop --project my_loop \\
        --micrographs /data/mics --sampling-rate 1.06 --diameter 120 \\
        --coordinates /data/corrected_picks --gpus 0

Protocol parameters of the workflow file can be changed with ``--set LABEL.PARAM=VALUE``, e.g.
``--set train.epochs=60 --set "post-process.edgeDistance=90"``. The protocols run one after the
other (each waits for the previous); the script prints their summaries and exits non-zero, with
the failing protocol's error, when one fails. Open the project in the Scipion GUI afterwards to
inspect the runs, or continue from them (extraction, 2D classification).
"""
import argparse
import json
import os
import sys

from cryounet_plugin.constants import MODELS_GENERAL
from cryounet_plugin.engine import BOX_FACTOR, cudaImpossible

WORKFLOWS_FOLDER = os.path.dirname(os.path.abspath(__file__))
#: The workflows shipped with the plugin, by the name ``--workflow`` takes.
WORKFLOWS = {"train": os.path.join(WORKFLOWS_FOLDER, "cryounet_workflow.json"),
             "loop": os.path.join(WORKFLOWS_FOLDER, "cryounet_loop_workflow.json")}
DEFAULT_WORKFLOW = WORKFLOWS["train"]
LOOP_WORKFLOW = WORKFLOWS["loop"]
#: Classes of the protocols the command-line options fill in.
MICROGRAPHS_CLASS = "ProtImportMicrographs"
COORDINATES_CLASS = "CryoUnetProtImportCoordinates"
PICK_CLASS = "CryoUnetProtPick"
GPU_CLASSES = ("CryoUnetProtTrain", PICK_CLASS, "CryoUnetProtRefine")


def parseArgs(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m cryounet_plugin.workflows.run_workflow",
        description="Create a Scipion project from a CryoUNet workflow and run it headless.")
    parser.add_argument("--project", required=True, help="name of the new Scipion project")
    parser.add_argument("--location", help="folder for the project (default: Scipion's "
                                           "projects folder in SCIPION_USER_DATA)")
    parser.add_argument("--workflow", default="train",
                        help="workflow: %s (shipped with the plugin), or the path of a workflow "
                             "JSON (default: train)" % ", ".join(sorted(WORKFLOWS)))
    parser.add_argument("--micrographs", required=True, help="folder of the MRC micrographs")
    parser.add_argument("--pattern", default="*.mrc", help="micrograph file pattern (*.mrc)")
    parser.add_argument("--sampling-rate", type=float, required=True,
                        help="pixel size of the micrographs in Angstrom")
    parser.add_argument("--voltage", type=float, default=300.0, help="kV (300)")
    parser.add_argument("--coordinates", required=True,
                        help="folder with one coordinate file per labelled (or corrected) "
                             "micrograph (STAR/BOX/CSV, named like the micrograph)")
    parser.add_argument("--coordinates-pattern", default="*.star",
                        help="coordinate file pattern (*.star)")
    parser.add_argument("--box-size", type=int, default=0,
                        help="box size of the coordinates in pixels (the extraction box; "
                             "training takes the particle diameter as box / %g). 0: the box of "
                             "the picks they correct, in the loop" % BOX_FACTOR)
    parser.add_argument("--diameter", type=float, default=None,
                        help="particle diameter in pixels of the micrographs, for picking with "
                             "the general model (the loop's first pick)")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpus", default=None, help="GPU ids for training and picking ('0 1')")
    device.add_argument("--cpu", action="store_true",
                        help="run on the CPU (slow; the default on a machine without a CUDA GPU)")
    parser.add_argument("--set", action="append", default=[], metavar="LABEL.PARAM=VALUE",
                        help="set a protocol parameter of the workflow (repeatable)")
    return parser.parse_args(argv)


def workflowPath(name):
    """The workflow file ``--workflow`` names: a shipped one by name, else a path."""
    path = WORKFLOWS.get(name, name)
    if not os.path.isfile(path):
        raise SystemExit("error: no workflow %r: give one of %s or the path of a workflow JSON"
                         % (name, ", ".join(sorted(WORKFLOWS))))
    return path


def onlyOne(protocols, className):
    """The workflow's one protocol of class ``className``."""
    found = [p for p in protocols if p.get("object.className") == className]
    if len(found) != 1:
        raise SystemExit("error: the workflow has %d %s protocols; this script fills in exactly "
                         "one (use --set LABEL.PARAM=VALUE for the others)" % (len(found), className))
    return found[0]


def generalModelPicks(protocols):
    return [p for p in protocols if p.get("object.className") == PICK_CLASS
            and str(p.get("modelSource", "")) == str(MODELS_GENERAL)]


def applySettings(protocols, args):
    """Patch the workflow's protocol dicts (a list, as exported by Scipion) in place."""
    byLabel = {p.get("object.label"): p for p in protocols}
    mics, coords = onlyOne(protocols, MICROGRAPHS_CLASS), onlyOne(protocols, COORDINATES_CLASS)
    mics.update(filesPath=os.path.abspath(args.micrographs), filesPattern=args.pattern,
                samplingRate=str(args.sampling_rate), voltage=str(args.voltage))
    coords.update(filesPath=os.path.abspath(args.coordinates),
                  filesPattern=args.coordinates_pattern, boxSize=str(args.box_size))
    for prot in protocols:
        if prot.get("object.className") not in GPU_CLASSES:
            continue
        if args.cpu or (args.gpus is None and cudaImpossible()):
            prot["useGpu"] = "False"
        elif args.gpus is not None:
            prot.update(useGpu="True", gpuList=args.gpus)
    for prot in generalModelPicks(protocols) if args.diameter is not None else []:
        prot.update(diameterUnit="0", particleDiameter=str(args.diameter))
    for item in args.set:
        key, sep, value = item.partition("=")
        label, dot, param = key.rpartition(".")
        if not sep or not dot:
            raise SystemExit("error: --set expects LABEL.PARAM=VALUE, got %r" % item)
        if label not in byLabel:
            raise SystemExit("error: the workflow has no protocol labelled '%s' (labels: %s)"
                             % (label, ", ".join(byLabel)))
        byLabel[label][param] = value
    for prot in generalModelPicks(protocols):
        if not float(prot.get("particleDiameter") or 0):
            raise SystemExit("error: '%s' picks with the general model, which needs the particle "
                             "diameter: give --diameter PIXELS" % prot.get("object.label"))
    return protocols


def main(argv=None):
    args = parseArgs(argv)
    workflow = workflowPath(args.workflow)
    with open(workflow) as handle:
        protocols = json.load(handle)
    applySettings(protocols, args)

    from pyworkflow.project import Manager  # after argument parsing: --help needs no Scipion
    manager = Manager()
    if manager.hasProject(args.project):
        raise SystemExit("error: a project named '%s' already exists" % args.project)
    project = manager.createProject(args.project, location=args.location)
    os.chdir(project.getPath())
    created = project.loadProtocols(jsonStr=json.dumps(protocols))
    for prot in protocols:  # Scipion's loader gives each protocol its class's default label
        if prot.get("object.label"):
            created[prot["object.id"]].setObjLabel(prot["object.label"])
            project.saveProtocol(created[prot["object.id"]])
    print("Project %s: %d protocols from %s" % (project.getPath(), len(created), workflow))
    for jsonId in [p["object.id"] for p in protocols]:
        prot = created[jsonId]
        print("Running %s (%s)..." % (prot.getObjLabel(), prot.getClassName()), flush=True)
        errors = prot.validate()
        if errors:
            print("error: %s is not valid:\n  %s" % (prot.getObjLabel(), "\n  ".join(errors)),
                  file=sys.stderr)
            return 1
        project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            print("error: %s %s: %s (log: %s)" % (prot.getObjLabel(), prot.getStatus(),
                                                  prot.getErrorMessage(),
                                                  os.path.join(project.getPath(),
                                                               prot.getStdoutLog())),
                  file=sys.stderr)
            return 1
        for line in prot.summary():
            print("    " + line)
    print("Done. Open project '%s' from Scipion's project manager (scipion3)." % args.project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
