"""The whole pack over the mocked resource graph of each stack: committed stacks pass, broken ones fail by name."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.conftest import MARKERS, upstream_for
from tests.harness import REPO, Evaluation, evaluate, is_secret
from tests.policy import Violation, from_evaluation, mandatory, run_pack

# Dev's target (local) needs no cloud account; the Azure and AWS stacks carry their target's hosting block.
AWS_LIVE = {"siteline:target": "aws", "siteline:hosting.azure": None, "siteline:hosting.size": None,
            "siteline:database.size": None,
            "siteline:hosting.aws": {"region": "eu-west-1",
                                     "solutionStack": "64bit Amazon Linux 2023 v4.5.2 running Python 3.11",
                                     "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c"}}


@pytest.fixture(autouse=True)
def _package(dev_package: dict[str, str]) -> None:
    """Every stack here deploys the package the committed dev stack names, so targets that check it pass."""


def upstream(stack: str) -> dict[str, dict[str, Any]]:
    """The stack's upstream exports the real dev package (targets verify the file against its sha256)."""
    release = {"version": "0.1.0", "package": "dist/site-0.1.0.zip",
               "sha256": hashlib.sha256((REPO / "dist" / "site-0.1.0.zip").read_bytes()).hexdigest()}
    shape = upstream_for(stack)
    for outputs in shape.values():
        outputs.update({k: dict(release) for k in ("release", "verifiedRelease") if outputs.get(k)})
    return shape


def evaluated(stack: str, overrides: Optional[dict[str, Any]] = None) -> Evaluation:
    if stack == "dev":
        evaluation = evaluate("dev", overrides=overrides)
    else:
        evaluation = evaluate(stack, overrides=overrides, secrets=MARKERS, upstream=upstream(stack))
    assert evaluation.error is None, f"{stack} failed to evaluate: {evaluation.error}"
    return evaluation


def violations(evaluation: Evaluation) -> list[Violation]:
    resource_view, stack_view = from_evaluation(evaluation)
    assert resource_view, "an empty graph would pass every rule"
    return run_pack(resource_view, stack_view)


def names(found: list[Violation]) -> set[str]:
    return {v.policy for v in found}


# --- committed stacks pass -----------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "test", "live"])
def test_committed_stack_passes_every_rule(stack: str) -> None:
    found = violations(evaluated(stack))
    assert found == [], "\n".join(f"{v.policy}: {v.message}" for v in found)


def test_live_on_aws_passes_every_rule() -> None:
    found = violations(evaluated("live", AWS_LIVE))
    assert found == [], "\n".join(f"{v.policy}: {v.message}" for v in found)


VPS_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJv0dmVyeWZha2VrZXlmb3J0ZXN0c29ubHkwMDAw root@vps"
VPS_LIVE = {"siteline:target": "vps", "siteline:hosting.azure": None, "siteline:hosting.size": None,
            "siteline:database.size": None, "siteline:hosting.instances": 1,
            "siteline:database.highAvailability": False,
            "siteline:hosting.vps": {"host": "203.0.113.10", "hostKey": VPS_HOST_KEY}}


def evaluated_vps_live() -> Evaluation:
    evaluation = evaluate("live", overrides=VPS_LIVE, upstream=upstream("live"),
                          secrets={**MARKERS, "siteline:sshPrivateKey": "MARKER-ssh-private-key"})
    assert evaluation.error is None, f"live on vps failed to evaluate: {evaluation.error}"
    assert evaluation.of_type("command:remote:Command"), "live on vps deploys with remote commands"
    return evaluation


def test_live_on_vps_passes_every_rule() -> None:
    found = violations(evaluated_vps_live())
    assert found == [], "\n".join(f"{v.policy}: {v.message}" for v in found)


# --- broken stacks fail, with the rule named -----------------------------------------------------

REAL_MAIL = {"siteline:smtp.mode": "deliver", "siteline:smtp.allowRealMail": True,
             "siteline:smtp.host": "smtp.example.com"}


def test_local_dev_delivering_real_mail_fails() -> None:
    found = mandatory(violations(evaluated("dev", REAL_MAIL)))
    assert names(found) == {"real-mail-only-on-live"}


def test_test_delivering_real_mail_fails() -> None:
    found = mandatory(violations(evaluated("test", {"siteline:smtp.mode": "deliver",
                                                    "siteline:smtp.allowRealMail": True})))
    assert "real-mail-only-on-live" in names(found)


def test_a_secret_put_in_plain_settings_fails_on_azure() -> None:
    found = mandatory(violations(evaluated("test", {"siteline:settings.PAYMENT_API_KEY": "sk_live_not_a_secret"})))
    assert "app-settings-no-literal-secrets" in names(found)
    assert any("PAYMENT_API_KEY" in v.message and "sk_live" not in v.message for v in found)


def test_live_with_short_backups_fails() -> None:
    found = mandatory(violations(evaluated("live", {"siteline:database.backupRetentionDays": 14})))
    assert "live-database-safeguards" in names(found)


def test_live_on_aws_with_short_backups_fails() -> None:
    found = mandatory(violations(evaluated("live", {**AWS_LIVE, "siteline:database.backupRetentionDays": 7})))
    assert "live-database-safeguards" in names(found)


def test_live_without_high_availability_is_advised_not_blocked() -> None:
    found = violations(evaluated("live", {"siteline:database.highAvailability": False}))
    assert names(found) == {"live-database-high-availability"} and mandatory(found) == []


# The program itself refuses these at preview; the pack is the second line when a graph is tampered
# with (a forked program, a hand-edited component). The graph is evaluated, then edited.

def _tampered(evaluation: Evaluation, type_token: str, edit: dict[str, Any], path: str = "") -> Evaluation:
    for registered in evaluation.resources:
        if registered.type == type_token:
            target = registered.inputs
            for part in filter(None, path.split(".")):
                target = target[part]
            target.update(edit)
    return evaluation


def test_a_release_command_without_sha256_fails() -> None:
    evaluation = evaluated("dev")
    commands = [r for r in evaluation.of_type("command:local:Command")
                if "RELEASE_PACKAGE" in r.plain_inputs.get("environment", {})]
    assert commands, "the local target's release command carries the package"
    commands[0].inputs["environment"]["RELEASE_SHA256"] = ""
    assert names(mandatory(violations(evaluation))) == {"release-sha256-pinned"}


def test_live_on_vps_without_the_host_key_fails() -> None:
    evaluation = evaluated_vps_live()
    remote = [r for r in evaluation.resources if r.type.startswith("command:remote:")]
    for registered in remote:
        connection = registered.inputs["connection"]
        (connection["value"] if is_secret(connection) else connection).pop("hostKey")
    found = mandatory(violations(evaluation))
    assert names(found) == {"ssh-host-key-pinned"}
    assert {v.urn for v in found} == {r.urn for r in remote}


def test_live_on_vps_with_a_release_command_without_sha256_fails() -> None:
    evaluation = evaluated_vps_live()
    release = evaluation.named("-vps-release")
    sha256 = release.plain_inputs["create"].split(" SHA256=", 1)[1].split(" ", 1)[0]
    release.inputs["create"] = release.inputs["create"].replace(f" SHA256={sha256} ", " ", 1)
    assert names(mandatory(violations(evaluation))) == {"release-sha256-pinned"}


def test_live_environment_without_require_verified_fails() -> None:
    evaluation = _tampered(evaluated("live"), "siteline:index:Environment", {"requireVerified": False})
    assert names(mandatory(violations(evaluation))) == {"live-requires-verified-release"}


def test_the_policy_pack_files_the_workflows_run_exist() -> None:
    # Every workflow passes `policyPacks: policy` / `--policy-pack policy`; guard that layout.
    for path in ("policy/PulumiPolicy.yaml", "policy/__main__.py", "policy/rules.py", "policy/requirements.txt"):
        assert Path(REPO / path).is_file(), path
