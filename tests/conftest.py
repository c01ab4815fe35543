"""Shared fixtures: the repo on sys.path, the dev package built once, stack fixtures for test and live."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Marker values for every secret a committed stack needs: a test fails if one shows in plain text.
MARKERS = {
    "siteline:secrets": {"ADMIN_TOKEN": "MARKER-admin-token-7f3a", "CRM_API_KEY": "MARKER-crm-key-91bc"},
    "siteline:smtp.password": "MARKER-smtp-password-c0de",
}
MARKER_VALUES = ["MARKER-admin-token-7f3a", "MARKER-crm-key-91bc", "MARKER-smtp-password-c0de"]
GENERATED_MARKER = "MARKERpw"  # what the mocked pulumi-random passwords start with


def build_package(version: str, out: Path, source: Path = REPO / "examples" / "site") -> dict[str, str]:
    """Build a site package with the project's own packaging command; returns the release dict."""
    printed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "site" / "package.py"), "--version", version,
         "--source", str(source), "--out", str(out)],
        check=True, capture_output=True, text=True,
    ).stdout
    fields = dict(line.split("=", 1) for line in printed.strip().splitlines())
    return {"version": fields["version"], "package": fields["package"], "sha256": fields["sha256"]}


@pytest.fixture(scope="session")
def dev_package() -> dict[str, str]:
    """The package the committed dev stack names (dist/site-0.1.0.zip), built as the README says."""
    return build_package("0.1.0", REPO / "dist")


def released(version: str = "1.4.0", sha: str = "a" * 64) -> dict[str, str]:
    """A release as an upstream stack exports it (targets that read the package need promoted_package)."""
    return {"version": version, "package": f"dist/site-{version}.zip", "sha256": sha}


@pytest.fixture(scope="session")
def promoted_package() -> dict[str, str]:
    """A real package for stacks that are promoted: dist/site-1.4.0.zip, its path relative like an output's."""
    built = build_package("1.4.0", REPO / "dist")
    return {**built, "package": "dist/site-1.4.0.zip"}


def upstream_for(stack: str, release: dict[str, str] | None = None, verified: bool = True) -> dict[str, dict[str, Any]]:
    """What the promoteFrom stack of a committed test/live stack exports."""
    release = release or released()
    if stack == "test":
        return {"organization/siteline/dev": {"release": release, "contract": 1}}
    return {"organization/siteline/test": {
        "release": release, "verifiedRelease": release if verified else None, "contract": 1}}
