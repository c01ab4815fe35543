"""Run the policy pack without the Pulumi engine: build the argument objects the engine would pass.

The engine hands resource rules a resource's inputs, and stack rules every resource's outputs. Under
mocks the harness records inputs; a custom resource's outputs hold its inputs, and the Environment
component's outputs are the stack outputs (`__main__.py` exports exactly `environment.outputs`), so
`from_evaluation` merges those into the component's stack-level view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules
from tests.harness import Evaluation

PROJECT = "siteline"


@dataclass(frozen=True)
class Violation:
    policy: str
    level: EnforcementLevel
    message: str
    urn: Optional[str]


def urn(stack: str, type_token: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{type_token}::{name}"


def options(protect: bool = False, parent: Optional[str] = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=protect, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
                                 parent=parent)


def resource_args(type_token: str, props: Mapping[str, Any], stack: str = "dev", name: str = "subject",
                  protect: bool = False, config: Optional[dict[str, Any]] = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(type_token, props, urn(stack, type_token, name), name, options(protect), None,
                                  config or {})


def resource(type_token: str, props: Mapping[str, Any], stack: str = "dev", name: Optional[str] = None,
             protect: bool = False, dependencies: Iterable[PolicyResource] = ()) -> PolicyResource:
    name = name or type_token.rsplit(":", 1)[-1].lower()
    return PolicyResource(type_token, props, urn(stack, type_token, name), name, options(protect), None, None,
                          list(dependencies), {})


def environment(role: str, stack: Optional[str] = None, **inputs: Any) -> PolicyResource:
    props = {"role": role, "target": "azure", "smtpMode": "deliver" if role == "live" else "sink",
             "allowRealMail": False, "requireVerified": role == "live", "promoteFrom": "", **inputs}
    return resource(rules.ENVIRONMENT, props, stack=stack or role, name=stack or role)


def stack_args(resources: list[PolicyResource], config: Optional[dict[str, Any]] = None) -> StackValidationArgs:
    return StackValidationArgs(resources, config or {})


def reported(validator: Callable[[Any, Any], None], args: Any) -> list[str]:
    """The messages a validator reports for `args`."""
    messages: list[str] = []
    validator(args, lambda message, urn=None: messages.append(message))
    return messages


def run_pack(resource_view: list[PolicyResource], stack_view: Optional[list[PolicyResource]] = None,
             config: Optional[dict[str, dict[str, Any]]] = None) -> list[Violation]:
    """Every rule of the pack over one stack, as `pulumi preview --policy-pack policy` would run them."""
    found: list[Violation] = []
    config = config or {}
    for policy in rules.POLICIES:
        level = policy.enforcement_level or EnforcementLevel.ADVISORY

        def report(message: str, urn: Optional[str] = None, name: str = policy.name,
                   level: EnforcementLevel = level) -> None:
            found.append(Violation(name, level, message, urn))

        if isinstance(policy, ResourceValidationPolicy):
            for item in resource_view:
                args = ResourceValidationArgs(item.resource_type, item.props, item.urn, item.name, item.opts,
                                              None, config.get(policy.name, {}))
                policy.validate(args, lambda message, urn=None, item=item: report(message, item.urn))
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(stack_view or resource_view, config.get(policy.name, {})), report)
    return found


def from_evaluation(evaluation: Evaluation) -> tuple[list[PolicyResource], list[PolicyResource]]:
    """(resource view, stack view) of an evaluated stack: what Analyze and AnalyzeStack would receive."""
    views: list[list[PolicyResource]] = []
    for stack_level in (False, True):
        by_urn: dict[str, PolicyResource] = {}
        for registered in evaluation.resources:
            props = registered.plain_inputs
            if stack_level and registered.type == rules.ENVIRONMENT:
                props = {**props, **evaluation.plain_outputs}
            by_urn[registered.urn] = PolicyResource(
                registered.type, props, registered.urn, registered.name,
                options(registered.protect, registered.parent or None), None, None, [], {})
        for registered in evaluation.resources:
            item = by_urn[registered.urn]
            item.parent = by_urn.get(registered.parent)
            item.dependencies = [by_urn[d] for d in registered.dependencies if d in by_urn]
        views.append(list(by_urn.values()))
    return views[0], views[1]


def mandatory(violations: list[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == EnforcementLevel.MANDATORY]
