"""``python -m cryounet`` (and the ``cryounet`` command) run the command-line interface."""
import sys

if __name__ == "__main__":  # drop the working folder from the import path before importing more
    from cryounet.process import strip_working_folder

    strip_working_folder()

from cryounet.cli import main  # noqa: E402 - after the import path is made safe
from cryounet.process import reexec_with_allocator_settings  # noqa: E402


def run() -> None:
    """Entry point of the process: allocator settings first (a re-execution), then the CLI."""
    reexec_with_allocator_settings(sys.argv[1:])
    sys.exit(main())


if __name__ == "__main__":
    run()
