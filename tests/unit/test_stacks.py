"""Every committed stack evaluates, exports the v1 contract, and keeps every secret wrapped."""

from __future__ import annotations

import json

import jsonschema
import pytest

from components import outputs
from tests.conftest import GENERATED_MARKER, MARKER_VALUES, MARKERS, upstream_for
from tests.harness import Evaluation, evaluate, is_secret, plain_text

COMMITTED = ["dev", "test", "live"]


@pytest.fixture(scope="module", params=COMMITTED)
def committed(request: pytest.FixtureRequest, dev_package: dict[str, str],
              promoted_package: dict[str, str]) -> Evaluation:
    stack = request.param
    if stack == "dev":
        evaluation = evaluate("dev")
    else:
        evaluation = evaluate(stack, secrets=MARKERS, upstream=upstream_for(stack, promoted_package))
    assert evaluation.error is None, f"{request.param} failed to evaluate: {evaluation.error}"
    return evaluation


def test_registers_an_environment_and_its_target(committed: Evaluation) -> None:
    environment = committed.one("siteline:index:Environment")
    role = environment.plain_inputs["role"]
    assert role == committed.stack
    targets = [r for r in committed.resources if r.type.startswith("siteline:targets:")]
    assert len(targets) == 1 and targets[0].parent == environment.urn
    assert any(r.custom for r in committed.resources), "a stack that registers no real resource deploys nothing"


def test_every_custom_resource_is_parented(committed: Evaluation) -> None:
    stack_urn_suffix = "pulumi:pulumi:Stack::siteline-" + committed.stack
    orphans = [r.name for r in committed.resources if r.parent.endswith(stack_urn_suffix)
               and r.type != "siteline:index:Environment"]
    assert orphans == []


def test_outputs_follow_the_contract_schema(committed: Evaluation) -> None:
    values = committed.plain_outputs
    outputs.validate(values)
    assert set(values) >= {"role", "target", "url", "release", "database", "smtp", "contract"}
    assert outputs.SiteOutputs.parse(values).contract == 1


def test_no_secret_marker_in_plain_text(committed: Evaluation) -> None:
    """Configured secrets and generated passwords: never in plain text in inputs, outputs or logs."""
    markers = [*MARKER_VALUES, GENERATED_MARKER]
    for resource in committed.resources:
        visible = plain_text(resource.inputs)
        for marker in markers:
            assert marker not in visible, f"{marker} in plain text in {resource.type} {resource.name}"
    for marker in markers:
        assert marker not in plain_text(committed.outputs)
        assert not [line for line in committed.logs if marker in line]


def test_generated_passwords_reach_the_resources_wrapped(committed: Evaluation) -> None:
    wrapped = json.dumps([r.inputs for r in committed.resources])
    assert GENERATED_MARKER in wrapped, "no generated password reached a resource: the scan proves nothing"


@pytest.mark.parametrize("stack", COMMITTED)
def test_committed_stacks_evaluate_in_preview(stack: str, dev_package: dict[str, str],
                                              promoted_package: dict[str, str]) -> None:
    evaluation = evaluate(stack, preview=True, secrets=MARKERS if stack != "dev" else None,
                          upstream=upstream_for(stack, promoted_package))
    assert evaluation.error is None, evaluation.error
    assert evaluation.one("siteline:index:Environment")


def test_markers_do_reach_the_resources(committed: Evaluation) -> None:
    """The scan above only means something if the secrets are really delivered, wrapped (dev needs none)."""
    wrapped = json.dumps([r.inputs for r in committed.resources])
    for marker in MARKER_VALUES:
        assert (marker in wrapped) == (committed.stack != "dev"), f"{marker} delivered wrongly on {committed.stack}"


def test_scan_would_catch_a_leak() -> None:
    leaked = {"environment": {"API_KEY": MARKER_VALUES[0]}}
    assert MARKER_VALUES[0] in plain_text(leaked)
    assert MARKER_VALUES[0] not in plain_text({"environment": {"4dabf18193072939515e22adb298388d":
                                                               "1b47061264138c4ac30d75fd1eb44270",
                                                               "value": MARKER_VALUES[0]}})


def test_schema_rejects_a_credential_in_database_output(committed: Evaluation) -> None:
    values = committed.plain_outputs
    broken = {**values, "database": {**values["database"], "password": "x"}}
    with pytest.raises(jsonschema.ValidationError):
        outputs.validate(broken)


def test_the_env_file_travels_as_a_secret(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev")
    assert evaluation.error is None
    stdin = evaluation.named("-release").inputs["stdin"]
    assert is_secret(stdin), "the site's env file travels as a secret"
    assert "DATABASE_URL=" in evaluation.named("-release").plain_inputs["stdin"]
