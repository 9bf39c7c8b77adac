import pytest

from computegate.engine import Catalog


def test_a_catalog_without_profiles_is_refused_so_no_accelerator_passes_as_none() -> None:
    with pytest.raises(ValueError, match="no profiles"):
        Catalog(profiles={}, country_groups={}, rules=())
