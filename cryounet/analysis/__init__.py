"""Torch-free analyses of a user's data (numpy/scipy only), shared by the CLI and the Scipion plugin."""
