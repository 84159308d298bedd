"""
RefScale on a ROS 2 graph: thin rclpy shells around the `refscale` library (refscale_model).

- `refscale_ros.recorder`: onboard `RecorderNode` (camera topics -> RefScale bag), `run_recorder()`
- `refscale_ros.reconstructor`: offboard `ReconstructorNode` (bag or live topics -> HR Images)
- `refscale_ros.player`: `BagPlayerNode`, a small `ros2 bag play` stand-in (raw CDR, recorded rate)

The same classes run under `ros2 run` / `ros2 launch` (colcon-installed package) and under
`refscale record` / `refscale reconstruct-node` (refscale_model/cli/ros.py); see docs/ros.md.
"""

__version__ = '0.1.0'
