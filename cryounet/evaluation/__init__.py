"""Evaluation: matching picks to ground truth (precision, recall, F1, AP) and scoring folders."""
