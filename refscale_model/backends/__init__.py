"""Downscaling backends behind the pipeline's numpy `Downscaler` contract: PyTorch and ONNX Runtime."""
