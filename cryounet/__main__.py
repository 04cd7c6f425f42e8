"""``python -m cryounet`` runs the command-line interface."""
import sys

from cryounet.cli import main

sys.exit(main())
