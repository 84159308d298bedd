# RefScale onboard image: ROS 2 Kilted (Ubuntu 24.04, Python 3.12) + refscale + refscale_ros.
#
#   docker build -t refscale:cpu .
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 \
#                --build-arg EXTRAS=onnx -t refscale:cuda .
#   docker run --rm --net=host --ipc=host -v "$PWD/recordings:/data/recordings" \
#              -v "$PWD/cache:/data/cache:ro" refscale:cpu \
#              ros2 launch refscale_ros record.launch.py cameras:=/cam/front/image_raw cache_dir:=/data/cache
#
# See docs/ros.md. The default command records with config/record.yaml into /data/recordings.
ARG ROS_DISTRO=kilted
FROM ros:${ROS_DISTRO}-ros-base

ARG ROS_DISTRO
# CPU wheels by default; a CUDA wheel index for GPU images (see above)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# extras of the refscale package, e.g. "onnx" (onnxruntime-gpu)
ARG EXTRAS=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/etc/refscale-constraints.txt \
    PYTHONUNBUFFERED=1

# The package's ROS dependencies (rclpy, sensor_msgs, nav_msgs, diagnostic_msgs, std_srvs,
# launch_ros, python3-numpy/yaml, the ament linters) come from rosdep, i.e. apt.
COPY ros2_ws/src/refscale_ros/package.xml /opt/refscale/ros2_ws/src/refscale_ros/package.xml
# apt versions follow the ROS distribution snapshot of the base image; pinning them would break rebuilds
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install -y --rosdistro "${ROS_DISTRO}" --from-paths /opt/refscale/ros2_ws/src --ignore-src \
    && rm -rf /var/lib/apt/lists/*

# The ROS Python extensions are built against Ubuntu's numpy 1.26: pip must not bring numpy 2
# (opencv-python >= 4.12 requires it).
RUN printf '%s\n' 'numpy<2' 'opencv-python<4.12' > /etc/refscale-constraints.txt \
    && pip install --index-url "${TORCH_INDEX}" "torch==2.13.0"

COPY pyproject.toml README.md /opt/refscale/
COPY refscale_model /opt/refscale/refscale_model
RUN pip install "/opt/refscale${EXTRAS:+[${EXTRAS}]}"

# refscale_ros: its `launch` symlink points at the top-level launch/ directory
COPY launch /opt/refscale/launch
COPY ros2_ws/src /opt/refscale/ros2_ws/src
RUN . "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && colcon --log-base /tmp/colcon-log build \
        --base-paths /opt/refscale/ros2_ws/src \
        --build-base /tmp/colcon-build --install-base /opt/refscale/install \
    && rm -rf /tmp/colcon-log /tmp/colcon-build

RUN printf '%s\n' '#!/bin/bash' 'set -e' \
        "source /opt/ros/${ROS_DISTRO}/setup.bash" \
        'source /opt/refscale/install/setup.bash' \
        'exec "$@"' > /usr/local/bin/refscale-entrypoint \
    && chmod +x /usr/local/bin/refscale-entrypoint \
    && mkdir -p /data/recordings /data/cache

WORKDIR /data
ENTRYPOINT ["/usr/local/bin/refscale-entrypoint"]
CMD ["ros2", "launch", "refscale_ros", "record.launch.py"]
