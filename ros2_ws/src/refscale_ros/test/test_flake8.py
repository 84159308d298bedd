"""ament_flake8 over the package (ROS 2 Python style); skipped where ament_flake8 is missing."""

import pytest


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    main_with_errors = pytest.importorskip('ament_flake8.main').main_with_errors
    rc, errors = main_with_errors(argv=[])
    assert rc == 0, f'{len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
