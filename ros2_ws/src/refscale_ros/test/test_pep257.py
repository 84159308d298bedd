"""ament_pep257 over the package (docstring style); skipped where ament_pep257 is missing."""

import pytest


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    main = pytest.importorskip('ament_pep257.main').main
    assert main(argv=['.', 'test']) == 0, 'docstring style errors (see above)'
