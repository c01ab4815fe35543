"""Promotion: a stack deploys its upstream's release; with requireVerified, only a verified one."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from components.release import PromotionError
from tests.conftest import MARKERS, released
from tests.harness import Evaluation, evaluate

UPSTREAM = "organization/siteline/dev"
# test on the local target, so the gate is exercised whatever cloud targets exist.
ON_LOCAL = {"siteline:target": "local", "siteline:hosting.azure": None, "siteline:hosting.instances": 1,
            "siteline:hosting.size": None, "siteline:smtp.mode": "sink", "siteline:site.port": 18080}


def _promote(upstream: dict[str, Any], require_verified: bool = True,
             verified: Optional[dict[str, str]] = None) -> Evaluation:
    overrides: dict[str, Any] = {**ON_LOCAL, "siteline:requireVerified": require_verified}
    if verified:
        overrides["siteline:verified"] = verified
    return evaluate("test", overrides=overrides, secrets=MARKERS, upstream={UPSTREAM: upstream})


def _release_env(evaluation: Evaluation) -> dict[str, str]:
    return evaluation.named("-release").plain_inputs["environment"]


def test_promotes_the_upstream_release_unchanged() -> None:
    evaluation = _promote({"release": released("2.0.0", "b" * 64)}, require_verified=False)
    assert evaluation.error is None, evaluation.error
    env = _release_env(evaluation)
    assert (env["RELEASE_VERSION"], env["RELEASE_SHA256"]) == ("2.0.0", "b" * 64)
    assert evaluation.plain_outputs["release"] == released("2.0.0", "b" * 64)


def test_verified_upstream_is_promoted() -> None:
    evaluation = _promote({"release": released(), "verifiedRelease": released()})
    assert evaluation.error is None, evaluation.error
    assert _release_env(evaluation)["RELEASE_VERSION"] == "1.4.0"


def test_unverified_upstream_fails_the_preview() -> None:
    evaluation = _promote({"release": released(), "verifiedRelease": None})
    assert isinstance(evaluation.error, PromotionError)
    assert "has no verifiedRelease" in str(evaluation.error)
    assert evaluation.resources == [], "a refused promotion must register nothing"


def test_mismatched_verification_fails_the_preview() -> None:
    evaluation = _promote({"release": released("1.5.0", "c" * 64), "verifiedRelease": released("1.4.0")})
    assert isinstance(evaluation.error, PromotionError)
    assert "verified 1.4.0 but now runs 1.5.0" in str(evaluation.error)
    assert evaluation.resources == []


def test_live_gate_refuses_before_registering_anything(promoted_package: dict[str, str]) -> None:
    """The committed live stack, its upstream unverified: the preview fails with nothing declared."""
    evaluation = evaluate("live", secrets=MARKERS, preview=True, upstream={"organization/siteline/test": {
        "release": promoted_package, "verifiedRelease": None, "contract": 1}})
    assert isinstance(evaluation.error, PromotionError)
    assert evaluation.resources == []


@pytest.mark.parametrize("broken", [
    {"version": "../../..", "package": "dist/site.zip", "sha256": "b" * 64},
    {"version": "1.0.0", "package": "dist/site.zip", "sha256": "zz"},
])
def test_malformed_upstream_release_is_refused(broken: dict[str, str]) -> None:
    evaluation = _promote({"release": broken}, require_verified=False)
    assert isinstance(evaluation.error, PromotionError)
    assert "is malformed" in str(evaluation.error)
    assert evaluation.resources == []


def test_upstream_without_release_fails_clearly() -> None:
    evaluation = _promote({"contract": 1}, require_verified=False)
    assert isinstance(evaluation.error, PromotionError)
    assert "has no release output" in str(evaluation.error)


@pytest.mark.parametrize("claimed,exported", [
    (released("2.0.0", "b" * 64), True),
    (released("1.9.0", "b" * 64), False),
    (released("2.0.0", "d" * 64), False),
])
def test_test_exports_verified_release_only_for_what_it_runs(claimed: dict[str, str], exported: bool) -> None:
    evaluation = _promote({"release": released("2.0.0", "b" * 64)}, require_verified=False,
                          verified={"version": claimed["version"], "sha256": claimed["sha256"]})
    assert evaluation.error is None, evaluation.error
    verified = evaluation.plain_outputs["verifiedRelease"]
    assert verified == (released("2.0.0", "b" * 64) if exported else None)


def test_dev_exports_no_verified_release(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev")
    assert "verifiedRelease" not in evaluation.plain_outputs
