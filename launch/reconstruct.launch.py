"""
Start the offboard RefScale reconstructor with its params file.

    ros2 launch refscale_ros reconstruct.launch.py bag_path:=/data/recordings/refscale_... \
        cache_dir:=/data/cache [output_bag:=/data/hr] [params_file:=/path/reconstruct.yaml]

Without bag_path it runs live on the topics of `ros2 bag play <RefScale bag>` (parameter
`cameras`). HR frames appear as sensor_msgs/Image under /refscale/hr/<camera topic>.
Batch mode ends the launch when the bag is done.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'refscale_ros'
OVERRIDES = ('bag_path', 'output_bag', 'cache_dir', 'cameras')


def _reconstructor(context, *args, **kwargs):
    """Build the Node action with only the overrides that were given."""
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value
    return [Node(
        package=PACKAGE,
        executable='reconstructor',
        name='refscale_reconstructor',
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'), overrides],
        on_exit=Shutdown(),
    )]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config',
                                  'reconstruct.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 params file of the reconstructor'),
        DeclareLaunchArgument('bag_path', default_value='',
                              description='RefScale bag to rebuild ("" = live mode)'),
        DeclareLaunchArgument('output_bag', default_value='',
                              description='write HR frames to this bag ("" = params file value)'),
        DeclareLaunchArgument('cache_dir', default_value='',
                              description='reference cache directory ("" = params file value)'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='live mode: comma-separated camera topics'),
        OpaqueFunction(function=_reconstructor),
    ])
