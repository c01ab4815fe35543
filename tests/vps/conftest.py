"""The rig fixture (and its marker) from tests/rig, for the vps tests."""

from tests.rig.conftest import pytest_configure, rig

__all__ = ["pytest_configure", "rig"]
