"""The RefScale pipeline as a library: `FrameEncoder` (onboard) and `Reconstructor` (offboard).

Everything is plain Python so the ROS nodes (thin shells) and the CLI share it, and it is testable
without a ROS graph. Bag layout: docs/bag-format.md.
"""

from refscale_model.backends.base import Downscaler, ModelInfo
from refscale_model.io.images import to_uint8
from refscale_model.pipeline.decoder import (
    EncodedFrame,
    FrameAssembler,
    FrameFailure,
    ReconstructedFrame,
    Reconstructor,
)
from refscale_model.pipeline.encoder import EncoderStats, FrameEncoder, FrameError, FrameResult
from refscale_model.pipeline.pose import Pose, PoseTracker
from refscale_model.pipeline.raw import iter_camera_frames
from refscale_model.pipeline.stages import EncoderPipeline

__all__ = [
    "Downscaler",
    "EncodedFrame",
    "EncoderPipeline",
    "FrameAssembler",
    "EncoderStats",
    "FrameEncoder",
    "FrameError",
    "FrameFailure",
    "FrameResult",
    "ModelInfo",
    "Pose",
    "PoseTracker",
    "ReconstructedFrame",
    "Reconstructor",
    "iter_camera_frames",
    "to_uint8",
]
