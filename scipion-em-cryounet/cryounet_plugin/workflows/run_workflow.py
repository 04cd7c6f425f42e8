"""Run the CryoUNet workflow (import micrographs -> import coordinates -> train -> pick ->
post-process) headless, in a new Scipion project, on your own data.

Example (inside Scipion's environment, e.g. ``scipion3 run python -m ...``)::

    python -m cryounet_plugin.workflows.run_workflow --project my_picking \\
        --micrographs /data/mics --pattern '*.mrc' --sampling-rate 1.06 \\
        --coordinates /data/manual_picks --box-size 180 --gpus 0

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

from cryounet_plugin.engine import BOX_FACTOR, cudaImpossible

DEFAULT_WORKFLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "cryounet_workflow.json")
LABEL_MICROGRAPHS = "import micrographs"
LABEL_COORDINATES = "import coordinates"
GPU_LABELS = ("train", "pick")


def parseArgs(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m cryounet_plugin.workflows.run_workflow",
        description="Create a Scipion project from the CryoUNet workflow and run it headless.")
    parser.add_argument("--project", required=True, help="name of the new Scipion project")
    parser.add_argument("--location", help="folder for the project (default: Scipion's "
                                           "projects folder in SCIPION_USER_DATA)")
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW,
                        help="workflow JSON (default: the one shipped with the plugin)")
    parser.add_argument("--micrographs", required=True, help="folder of the MRC micrographs")
    parser.add_argument("--pattern", default="*.mrc", help="micrograph file pattern (*.mrc)")
    parser.add_argument("--sampling-rate", type=float, required=True,
                        help="pixel size of the micrographs in Angstrom")
    parser.add_argument("--voltage", type=float, default=300.0, help="kV (300)")
    parser.add_argument("--coordinates", required=True,
                        help="folder with one coordinate file per labelled micrograph "
                             "(STAR/BOX/CSV, named like the micrograph)")
    parser.add_argument("--coordinates-pattern", default="*.star",
                        help="coordinate file pattern (*.star)")
    parser.add_argument("--box-size", type=int, default=0,
                        help="box size of the coordinates in pixels (the extraction box; "
                             "training takes the particle diameter as box / %g)" % BOX_FACTOR)
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpus", default=None, help="GPU ids for training and picking ('0 1')")
    device.add_argument("--cpu", action="store_true",
                        help="run on the CPU (slow; the default on a machine without a CUDA GPU)")
    parser.add_argument("--set", action="append", default=[], metavar="LABEL.PARAM=VALUE",
                        help="set a protocol parameter of the workflow (repeatable)")
    return parser.parse_args(argv)


def applySettings(protocols, args):
    """Patch the workflow's protocol dicts (a list, as exported by Scipion) in place."""
    byLabel = {p.get("object.label"): p for p in protocols}

    def setParam(label, param, value):
        if label not in byLabel:
            raise SystemExit("error: the workflow has no protocol labelled '%s' (labels: %s)"
                             % (label, ", ".join(byLabel)))
        byLabel[label][param] = value

    setParam(LABEL_MICROGRAPHS, "filesPath", os.path.abspath(args.micrographs))
    setParam(LABEL_MICROGRAPHS, "filesPattern", args.pattern)
    setParam(LABEL_MICROGRAPHS, "samplingRate", str(args.sampling_rate))
    setParam(LABEL_MICROGRAPHS, "voltage", str(args.voltage))
    setParam(LABEL_COORDINATES, "filesPath", os.path.abspath(args.coordinates))
    setParam(LABEL_COORDINATES, "filesPattern", args.coordinates_pattern)
    setParam(LABEL_COORDINATES, "boxSize", str(args.box_size))
    for label in GPU_LABELS:
        if args.cpu or (args.gpus is None and cudaImpossible()):
            setParam(label, "useGpu", "False")
        elif args.gpus is not None:
            setParam(label, "useGpu", "True")
            setParam(label, "gpuList", args.gpus)
    for item in args.set:
        key, sep, value = item.partition("=")
        label, dot, param = key.rpartition(".")
        if not sep or not dot:
            raise SystemExit("error: --set expects LABEL.PARAM=VALUE, got %r" % item)
        setParam(label, param, value)
    return protocols


def main(argv=None):
    args = parseArgs(argv)
    with open(args.workflow) as handle:
        protocols = json.load(handle)
    applySettings(protocols, args)

    from pyworkflow.project import Manager  # after argument parsing: --help needs no Scipion
    manager = Manager()
    if manager.hasProject(args.project):
        raise SystemExit("error: a project named '%s' already exists" % args.project)
    project = manager.createProject(args.project, location=args.location)
    os.chdir(project.getPath())
    created = project.loadProtocols(jsonStr=json.dumps(protocols))
    print("Project %s: %d protocols from %s" % (project.getPath(), len(created), args.workflow))
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
