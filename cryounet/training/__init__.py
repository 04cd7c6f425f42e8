"""Training: labelled micrographs and patches, targets, losses, augmentation, the training loop,
validation, and pseudo-labelled refinement."""
