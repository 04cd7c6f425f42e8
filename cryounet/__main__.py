"""``python -m cryounet`` (and the ``cryounet`` command) run the command-line interface."""
import sys

from cryounet.cli import main
from cryounet.process import reexec_with_allocator_settings


def run() -> None:
    """Entry point of the process: allocator settings first (a re-execution), then the CLI."""
    reexec_with_allocator_settings(sys.argv[1:])
    sys.exit(main())


if __name__ == "__main__":
    run()
