"""Settings: role inference and role defaults, config as the CLI types it, secrets kept out of plain keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.problems import ConfigError
from tests.conftest import MARKERS, REPO, upstream_for
from tests.harness import MissingConfigError, evaluate, stack_config

RELEASE = {"siteline:release": {"version": "0.1.0", "package": "dist/site-0.1.0.zip"}}


@pytest.mark.parametrize("stack,role", [("pr-42", "review"), ("prod", "live"), ("production", "live")])
def test_role_is_inferred_from_the_stack_name(dev_package: dict[str, str], stack: str, role: str) -> None:
    evaluation = evaluate(stack, overrides=RELEASE)
    if role == "live":
        # live on the default target (local) is refused, which names the inferred role
        assert isinstance(evaluation.error, ConfigError)
        assert "on the live role" in str(evaluation.error)
    else:
        assert evaluation.error is None, evaluation.error
        assert evaluation.one("siteline:index:Environment").plain_inputs["role"] == role


def test_review_stacks_are_throwaway(dev_package: dict[str, str]) -> None:
    """A review stack's database goes with it, and it keeps short backups and a mail sink."""
    evaluation = evaluate("pr-7", overrides=RELEASE)
    database = evaluation.named("-database").plain_inputs["environment"]
    assert database["DB_RETAIN"] == "false"
    assert evaluation.plain_outputs["smtp"]["mode"] == "sink"


def test_explicit_role_wins_over_the_stack_name(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("staging", overrides={**RELEASE, "siteline:role": "test"})
    assert evaluation.error is None, evaluation.error
    assert evaluation.plain_outputs["role"] == "test"


def test_numbers_set_with_path_are_accepted_where_strings_are_expected(dev_package: dict[str, str]) -> None:
    """`pulumi config set --path siteline:database.version 15` stores the number 15."""
    evaluation = evaluate("dev", overrides={"siteline:database.version": 15, "siteline:database.storageGb": "40"})
    assert evaluation.error is None, evaluation.error
    assert evaluation.named("-database").plain_inputs["environment"]["DB_VERSION"] == "15"


def test_a_refresh_source_without_a_refresh_id_takes_no_copy(dev_package: dict[str, str]) -> None:
    """refreshFrom names where copies come from; only a refreshId (set by the refresh dispatch) takes one."""
    evaluation = evaluate("dev", overrides={"siteline:database.refreshFrom": "organization/siteline/live"})
    assert evaluation.error is None, evaluation.error
    assert evaluation.named("-database").plain_inputs["environment"]["DB_NAME"] == "site"


def test_booleans_are_not_guessed_from_words(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev", overrides={"siteline:database.retainOnDestroy": "no"})
    assert "siteline:database.retainOnDestroy:" in str(evaluation.error)


@pytest.mark.parametrize("key,value", [("siteline:settings", {"API_KEY": "MARKER-admin-token-7f3a"}),
                                       ("siteline:site.port", 8081)])
def test_a_secret_under_a_plain_key_is_refused_and_not_echoed(dev_package: dict[str, str], key: str,
                                                               value: object) -> None:
    evaluation = evaluate("dev", secrets={key: value})
    message = str(evaluation.error)
    assert f"siteline:{key.split(':')[1].split('.')[0]}: holds a secret value" in message
    assert "MARKER" not in message and "8081" not in message
    assert evaluation.resources == []


def test_a_plain_leaf_beside_secure_ones_in_the_stack_file_is_refused(tmp_path: Path,
                                                                      promoted_package: dict[str, str]) -> None:
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "components").symlink_to(REPO / "components")
    (tmp_path / "schemas").symlink_to(REPO / "schemas")
    stack_file = (REPO / "Pulumi.test.yaml").read_text() + (
        "  siteline:secrets:\n"
        "    ADMIN_TOKEN:\n      secure: v1:AAAA:BBBB\n"
        "    CRM_API_KEY: in-the-clear\n")
    (tmp_path / "Pulumi.test.yaml").write_text(stack_file)
    evaluation = evaluate("test", secrets=MARKERS, project_dir=tmp_path,
                          upstream=upstream_for("test", promoted_package))
    message = str(evaluation.error)
    assert "siteline:secrets.CRM_API_KEY: is stored in plain text in the stack file" in message
    assert "ADMIN_TOKEN: is stored" not in message
    assert "in-the-clear" not in message


def test_project_defaults_apply_like_the_cli() -> None:
    config, _ = stack_config("dev", overrides={"siteline:target": None})
    assert config["siteline:target"] == "local", "the CLI restores a declared default"
    assert config["siteline:requireVerified"] == "false"


def test_a_declared_key_without_default_would_be_required(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: siteline\nruntime: python\nconfig:\n  role:\n    type: string\n")
    with pytest.raises(MissingConfigError, match="missing configuration value 'siteline:role'"):
        stack_config("dev", project_dir=tmp_path)
