"""Training: revisit pairs, the synthetic revisit generator, losses, the loop, the S_map gate calibration."""
