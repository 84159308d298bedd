"""Evaluation of trained weights on revisit pairs: PSNR/SSIM/bytes, and rate–distortion curves."""
