"""Lint: shell scripts pass shellcheck, Pulumi.yaml passes Pulumi's own project schema and rules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED_SCHEMA = REPO.parent / "shared" / "schemas" / "pulumi-project.schema.json"
SCRIPTS = sorted([*REPO.glob("components/scripts/**/*.sh"), REPO / "siteline", REPO / ".ci" / "run"])
CONFIG_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list}


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(s.relative_to(REPO)) for s in SCRIPTS])
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", "-x", "-P", "SCRIPTDIR", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scripts_are_strict() -> None:
    for script in SCRIPTS:
        text = script.read_text()
        if "# shellcheck shell=bash" in text:
            continue  # a sourced library: the scripts that source it set the options
        assert "set -euo pipefail" in text, f"{script} lacks set -euo pipefail"


def test_pulumi_yaml_matches_pulumis_project_schema() -> None:
    if not SHARED_SCHEMA.exists():
        pytest.skip("../shared/schemas is absent (a fresh clone outside the workplace)")
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(SHARED_SCHEMA),
                           str(REPO / "Pulumi.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pulumi_yaml_config_rules_that_live_outside_the_schema() -> None:
    """Project config: only simple types, defaults of the declared type, arrays with items."""
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["name"] == "siteline"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    for key, spec in project["config"].items():
        assert spec["type"] in CONFIG_TYPES, f"{key}: project config allows only {sorted(CONFIG_TYPES)}"
        assert spec.get("description"), f"{key} has no description"
        if spec["type"] == "array":
            assert "items" in spec, f"{key}: an array needs items"
        if "default" in spec:
            assert isinstance(spec["default"], CONFIG_TYPES[spec["type"]]), f"{key}: default is not a {spec['type']}"


@pytest.mark.parametrize("stack", ["dev", "test", "live"])
def test_stack_files_hold_no_plaintext_secrets(stack: str) -> None:
    """Stack files hold `secure:` values or nothing for the secret-bearing keys."""
    config = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]

    def leaves(value: object) -> list[object]:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                return []
            return [leaf for v in value.values() for leaf in leaves(v)]
        return [value]

    assert leaves(config.get("siteline:secrets", {})) == []
    assert "password" not in (config.get("siteline:smtp") or {}) or leaves(config["siteline:smtp"]["password"]) == []
    assert leaves(config.get("siteline:sshPrivateKey", {})) == []
