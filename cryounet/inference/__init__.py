"""Inference: tiled prediction with test-time augmentation, the (ensemble) picker, and picking
lists of micrographs into a folder."""
