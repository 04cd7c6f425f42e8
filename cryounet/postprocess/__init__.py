"""Post-processing: from probability maps to picks (peaks, NMS, edges) and filters on picks."""
