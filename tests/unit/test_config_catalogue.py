"""Config mistakes are refused at preview: one message, every key path named, nothing registered."""

from __future__ import annotations

from typing import Any

import pytest

from components.problems import ConfigError
from tests.conftest import MARKER_VALUES, MARKERS, upstream_for
from tests.harness import evaluate

# (stack, overrides, secrets or None for the stack's usual markers, key paths the message must name)
CASES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("unknown-top-key", "dev", {"siteline:relase": {"version": "1.0.0"}}, ["siteline:relase"]),
    ("role-not-enum", "dev", {"siteline:role": "prod"}, ["siteline:role"]),
    ("target-not-enum", "dev", {"siteline:target": "heroku"}, ["siteline:target"]),
    ("role-not-inferable", "staging", {"siteline:release": {"version": "1.0.0", "package": "dist/site-0.1.0.zip"}},
     ["siteline:role"]),
    ("site-port-range", "dev", {"siteline:site.port": 80}, ["siteline:site.port"]),
    ("site-port-type", "dev", {"siteline:site.port": "eighty"}, ["siteline:site.port"]),
    ("health-path", "dev", {"siteline:site.healthPath": "healthz"}, ["siteline:site.healthPath"]),
    ("site-unknown-field", "dev", {"siteline:site.strat": "x"}, ["siteline:site.strat"]),
    ("release-version", "dev", {"siteline:release.version": "v1"}, ["siteline:release.version"]),
    ("release-sha-format", "dev", {"siteline:release.sha256": "abc"}, ["siteline:release.sha256"]),
    ("release-sha-mismatch", "dev", {"siteline:release.sha256": "0" * 64}, ["siteline:release.sha256"]),
    ("release-missing-package", "dev", {"siteline:release.package": "dist/nope.zip"}, ["siteline:release.package"]),
    ("release-http", "dev", {"siteline:release.package": "http://example.com/site.zip"}, ["siteline:release.package"]),
    ("release-and-promote", "dev", {"siteline:promoteFrom": "organization/siteline/live"},
     ["siteline:release"]),
    ("no-release", "dev", {"siteline:release": None}, ["siteline:release"]),
    ("promote-from-format", "test", {"siteline:promoteFrom": "a b c"}, ["siteline:promoteFrom"]),
    ("require-verified-no-upstream", "dev", {"siteline:requireVerified": True}, ["siteline:requireVerified"]),
    ("live-unverified", "live", {"siteline:requireVerified": False}, ["siteline:requireVerified"]),
    ("verified-off-test", "dev", {"siteline:verified": {"version": "0.1.0", "sha256": "a" * 64}}, ["siteline:verified"]),
    ("instances-range", "dev", {"siteline:hosting.instances": 0}, ["siteline:hosting.instances"]),
    ("domain-format", "dev", {"siteline:hosting.domain": "not a domain"}, ["siteline:hosting.domain"]),
    ("hosting-unknown-target", "dev", {"siteline:hosting.heroku": {"app": "x"}}, ["siteline:hosting.heroku"]),
    ("local-unknown-field", "dev", {"siteline:hosting.local.port": 1}, ["siteline:hosting.local.port"]),
    ("local-port-clash", "dev", {"siteline:hosting.local.dbPort": 8080}, ["siteline:hosting.local"]),
    ("local-instances", "dev", {"siteline:hosting.instances": 2}, ["siteline:hosting.instances"]),
    ("local-ha", "dev", {"siteline:database.highAvailability": True}, ["siteline:database.highAvailability"]),
    ("db-engine", "dev", {"siteline:database.engine": "mysql"}, ["siteline:database.engine"]),
    ("db-version", "dev", {"siteline:database.version": "9"}, ["siteline:database.version"]),
    ("db-storage", "dev", {"siteline:database.storageGb": 5}, ["siteline:database.storageGb"]),
    ("db-backup-range", "dev", {"siteline:database.backupRetentionDays": 90}, ["siteline:database.backupRetentionDays"]),
    ("live-short-backups", "live", {"siteline:database.backupRetentionDays": 3}, ["siteline:database.backupRetentionDays"]),
    ("live-drop-db", "live", {"siteline:database.retainOnDestroy": False}, ["siteline:database.retainOnDestroy"]),
    ("refresh-on-live", "live", {"siteline:database.refreshFrom": "organization/siteline/test"},
     ["siteline:database.refreshFrom"]),
    ("refresh-id-alone", "dev", {"siteline:database.refreshId": "r1"}, ["siteline:database.refreshId"]),
    ("mask-strategy", "dev", {"siteline:database.mask": [{"table": "people", "column": "email", "strategy": "scramble"}]},
     ["siteline:database.mask[0].strategy"]),
    ("mask-fixed-no-value", "dev", {"siteline:database.mask": [{"table": "people", "column": "phone", "strategy": "fixed"}]},
     ["siteline:database.mask[0].value"]),
    ("mask-twice", "dev", {"siteline:database.mask": [{"table": "people", "column": "email", "strategy": "email"},
                                                      {"table": "people", "column": "email", "strategy": "hash"}]},
     ["siteline:database.mask[1]"]),
    ("mask-bad-ident", "dev", {"siteline:database.mask": [{"table": "People;drop", "column": "email", "strategy": "email"}]},
     ["siteline:database.mask[0].table"]),
    ("settings-name", "dev", {"siteline:settings.api-url": "x"}, ["siteline:settings.api-url"]),
    ("settings-reserved", "dev", {"siteline:settings.DATABASE_URL": "postgres://x"}, ["siteline:settings.DATABASE_URL"]),
    ("settings-nested", "dev", {"siteline:settings.FEATURES": {"a": 1}}, ["siteline:settings.FEATURES"]),
    ("smtp-mode", "dev", {"siteline:smtp.mode": "send"}, ["siteline:smtp.mode"]),
    ("smtp-port", "dev", {"siteline:smtp.port": 70000}, ["siteline:smtp.port"]),
    ("smtp-from", "dev", {"siteline:smtp.from": "not-an-email"}, ["siteline:smtp.from"]),
    ("smtp-host", "dev", {"siteline:smtp.host": "bad host!"}, ["siteline:smtp.host"]),
    ("real-mail-on-dev", "dev", {"siteline:smtp.mode": "deliver", "siteline:smtp.host": "smtp.example.com"},
     ["siteline:smtp.mode"]),
    ("deliver-without-host", "dev", {"siteline:smtp.mode": "deliver", "siteline:smtp.allowRealMail": True},
     ["siteline:smtp.host"]),
    ("allowlist-empty", "test", {"siteline:smtp.allow": []}, ["siteline:smtp.allow"]),
    ("allowlist-bad-domain", "test", {"siteline:smtp.allow": ["Example.COM"]}, ["siteline:smtp.allow[0]"]),
    ("required-secret-name", "dev", {"siteline:site.requiredSecrets": ["api key"]}, ["siteline:site.requiredSecrets"]),
    ("required-secret-missing", "dev", {"siteline:site.requiredSecrets": ["CRM_API_KEY"]}, ["siteline:secrets.CRM_API_KEY"]),
    ("vps-without-ssh-key", "live", {"siteline:target": "vps", "siteline:hosting.azure": None,
                                     "siteline:hosting.vps": {"host": "203.0.113.10",
                                                              "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx"},
                                     "siteline:hosting.instances": 1, "siteline:hosting.size": None,
                                     "siteline:database.highAvailability": False, "siteline:database.size": None},
     ["siteline:sshPrivateKey"]),
    # A marker as the key, so the check that no secret is echoed applies to it too.
    ("ssh-key-in-plain-text", "dev", {"siteline:sshPrivateKey": "MARKER-smtp-password-c0de"},
     ["siteline:sshPrivateKey"]),
    ("live-on-local", "live", {"siteline:target": "local", "siteline:hosting.instances": 1,
                               "siteline:database.highAvailability": False}, ["siteline:target"]),
    ("several-at-once", "dev", {"siteline:site.port": 1, "siteline:smtp.port": 0, "siteline:database.storageGb": 1},
     ["siteline:site.port", "siteline:smtp.port", "siteline:database.storageGb"]),
]


def _secrets_for(stack: str) -> dict[str, Any]:
    return MARKERS if stack in ("test", "live") else {}


@pytest.mark.parametrize("stack,overrides,paths", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_refused_before_anything_is_registered(
        dev_package: dict[str, str], stack: str, overrides: dict[str, Any], paths: list[str]) -> None:
    evaluation = evaluate(stack, overrides=overrides, secrets=_secrets_for(stack), upstream=upstream_for(stack))
    assert isinstance(evaluation.error, ConfigError), f"accepted, or failed otherwise: {evaluation.error!r}"
    message = str(evaluation.error)
    for path in paths:
        assert f"{path}:" in message, f"{path} not named in:\n{message}"
    assert "Fix:" in message
    assert evaluation.resources == [], "a refused config must register nothing"
    for marker in MARKER_VALUES:
        assert marker not in message


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_every_problem_is_listed_in_one_message(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev", overrides={"siteline:site.port": 1, "siteline:smtp.mode": "deliver",
                                            "siteline:smtp.host": "smtp.example.com", "siteline:bogus": "x"})
    message = str(evaluation.error)
    assert message.count("\n  - siteline:") == 3, message
    assert "has 3 problems" in message


def test_missing_secrets_are_listed_together(dev_package: dict[str, str]) -> None:
    """test needs ADMIN_TOKEN, CRM_API_KEY and smtp.password: all three in one error, with their commands."""
    evaluation = evaluate("test", upstream=upstream_for("test"))
    message = str(evaluation.error)
    for path in ("secrets.ADMIN_TOKEN", "secrets.CRM_API_KEY", "smtp.password"):
        assert f"siteline:{path}: is missing" in message
        assert f"pulumi config set --secret --path 'siteline:{path}'" in message
    assert evaluation.resources == []


def test_plaintext_secret_is_refused(dev_package: dict[str, str]) -> None:
    """A secret set without --secret is caught, and its value is not repeated in the error."""
    evaluation = evaluate("test", overrides={"siteline:secrets": {"ADMIN_TOKEN": "MARKER-admin-token-7f3a",
                                                                   "CRM_API_KEY": "MARKER-crm-key-91bc"},
                                             "siteline:smtp.password": "MARKER-smtp-password-c0de"},
                          upstream=upstream_for("test"))
    message = str(evaluation.error)
    assert "siteline:secrets: is stored in plain text" in message
    assert "siteline:smtp.password: is stored in plain text" in message
    for marker in MARKER_VALUES:
        assert marker not in message
