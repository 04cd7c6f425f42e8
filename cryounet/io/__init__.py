"""File input/output: MRC micrographs, coordinate files, atomic writes."""
