"""Sub-commands of the ``cryounet`` CLI (see :mod:`cryounet.cli`)."""
