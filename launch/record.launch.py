"""
Start the onboard RefScale recorder with its params file.

    ros2 launch refscale_ros record.launch.py \
        [params_file:=/path/record.yaml] [output_dir:=/data/recordings] \
        [cameras:=/cam/front/image_raw,/cam/left/image_raw/compressed] [cache_dir:=/data/cache]

Empty arguments keep the params file's values. `refscale record --params record.yaml` starts the
same node class with the same file where `ros2 launch` is not available (see docs/ros.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'refscale_ros'
OVERRIDES = ('output_dir', 'cameras', 'cache_dir')


def _recorder(context, *args, **kwargs):
    """Build the Node action with only the overrides that were given."""
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value  # cameras: one comma-separated string, the node splits it
    return [Node(
        package=PACKAGE,
        executable='recorder',
        name='refscale_recorder',
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), overrides],
        # the node drains its queue and finalises the bag on SIGINT; give it time before SIGTERM
        sigterm_timeout='15',
    )]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', 'record.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 params file of the recorder'),
        DeclareLaunchArgument('output_dir', default_value='',
                              description='directory for the bags ("" = params file value)'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='comma-separated TOPIC[:TYPE[:CACHE_ID]] entries '
                                          '("" = params file value)'),
        DeclareLaunchArgument('cache_dir', default_value='',
                              description='reference cache directory ("" = params file value)'),
        OpaqueFunction(function=_recorder),
    ])
