"""
RefScale on a ROS 2 graph: thin rclpy shells around the `refscale` library (refscale_model).

Nodes: `recorder.RecorderNode` (camera topics -> RefScale bag, `run_recorder()`),
`reconstructor.ReconstructorNode` (bag or live topics -> HR Images, `run_reconstructor()`),
`player.BagPlayerNode` (a small `ros2 bag play` stand-in). Plain Python beside them (no rclpy):
`frame_queue`, `recorder_stats`, `recording`, `diagnostics`, `recorder_config`,
`reconstructor_config`, `hr_output`, `messages`. `cli` adds `refscale record` /
`reconstruct-node` / `demo` through the `refscale.commands` entry point; `demo` is `make demo`.
See docs/ros.md.

The dependency points one way: refscale_ros imports refscale_model, never the reverse.
"""

__version__ = '0.1.0'
