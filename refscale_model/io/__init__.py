"""Image and ROS message conversions shared by the pipeline, the cache and the tools."""
