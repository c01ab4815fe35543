"""The session's rig: one booted server shared by the tests that ask for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .server import Rig, unavailable_reason


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig: needs the booted Debian server (root, systemd-nspawn)")


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    """A booted Rig; skips where the machine cannot run it, fails instead under CI's
    SITELINE_REQUIRE_RIG=1 so a missing rig never passes as a skip."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("SITELINE_REQUIRE_RIG") == "1":
            pytest.fail(f"SITELINE_REQUIRE_RIG=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    with Rig() as booted:
        yield booted
