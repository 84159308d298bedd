"""The installed package imports and its parameter files match the parameters the nodes declare."""

from pathlib import Path

import pytest
import yaml

PACKAGE_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('module, config, node', [
    ('refscale_ros.recorder', 'record.yaml', 'refscale_recorder'),
    ('refscale_ros.reconstructor', 'reconstruct.yaml', 'refscale_reconstructor'),
])
def test_params_file_names_only_declared_parameters(module, config, node):
    mod = pytest.importorskip(module)
    data = yaml.safe_load((PACKAGE_DIR / 'config' / config).read_text())
    assert list(data) == [node] == [mod.NODE_NAME]
    declared = {name for name, _default, _text in mod.PARAMETERS}
    assert set(data[node]['ros__parameters']) == declared
