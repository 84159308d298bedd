"""ament_python setup for refscale_ros: scripts in lib/refscale_ros, launch + config in share."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'refscale_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        # `launch` is a symlink to the repository's top-level launch/ (one source of truth)
        ('share/' + PACKAGE + '/launch', sorted(glob('launch/*.launch.py'))),
        ('share/' + PACKAGE + '/config', sorted(glob('config/*.yaml'))),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='refscale maintainers',
    maintainer_email='refscale@example.com',
    description='RefScale recorder / reconstructor nodes (thin shells around refscale)',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'recorder = refscale_ros.recorder:main',
            'reconstructor = refscale_ros.reconstructor:main',
            'player = refscale_ros.player:main',
        ],
        # `refscale record` / `reconstruct-node` / `demo` (refscale_model/cli discovers them)
        'refscale.commands': ['ros = refscale_ros.cli:register'],
    },
)
