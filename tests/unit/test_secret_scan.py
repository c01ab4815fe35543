"""Secret scan across every target: marker secrets, generated passwords and the SSH key never show in
plain text in a resource input, a stack output, a log line or an error message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GENERATED_MARKER, MARKER_VALUES, MARKERS, build_package
from tests.harness import Evaluation, evaluate, plain_text
from tests.unit.test_target_aws import aws_overrides
from tests.unit.test_target_vps import HOSTING, LIVE_ON_ONE_SERVER, SSH_KEY_MARKER

ALL_MARKERS = [*MARKER_VALUES, GENERATED_MARKER, SSH_KEY_MARKER]


def _live_on(target: str) -> dict[str, Any]:
    if target == "vps":
        return {**LIVE_ON_ONE_SERVER, "siteline:hosting.vps": HOSTING}
    if target == "aws":
        return aws_overrides("live", {"solutionStack": "64bit Amazon Linux 2023 v4.5.2 running Python 3.11",
                                      "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c"})
    return {}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_package("1.4.0", tmp_path_factory.mktemp("scan"))


@pytest.fixture(scope="module", params=["local", "vps", "azure", "aws"])
def evaluation(request: pytest.FixtureRequest, release: dict[str, str], dev_package: dict[str, str]) -> Evaluation:
    secrets = {**MARKERS, "siteline:sshPrivateKey": SSH_KEY_MARKER}
    if request.param == "local":  # the embedded default: dev, which also takes every secret it is given
        overrides = {"siteline:site.requiredSecrets": ["ADMIN_TOKEN", "CRM_API_KEY"],
                     "siteline:smtp.username": "apikey"}
        result = evaluate("dev", overrides=overrides, secrets=secrets)
    else:
        result = evaluate("live", overrides=_live_on(request.param), secrets=secrets, upstream={
            "organization/siteline/test": {"release": release, "verifiedRelease": release, "contract": 1}})
    assert result.error is None, f"{request.param}: {result.error}"
    return result


def test_no_marker_in_plain_text_anywhere(evaluation: Evaluation) -> None:
    visible = [plain_text(r.inputs) for r in evaluation.resources] + [plain_text(evaluation.outputs)]
    visible += evaluation.logs
    for marker in ALL_MARKERS:
        leaks = [text[:120] for text in visible if marker in text]
        assert leaks == [], f"{marker} in plain text: {leaks}"


def test_the_markers_were_delivered(evaluation: Evaluation) -> None:
    wrapped = str([r.inputs for r in evaluation.resources])
    for marker in [*MARKER_VALUES, GENERATED_MARKER]:
        assert marker in wrapped, f"{marker} never reached a resource: the scan would prove nothing"
