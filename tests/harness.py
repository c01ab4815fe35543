"""Evaluate the Siteline program under Pulumi's mocks and return what it registered, as plain data.

Config comes from the committed files exactly as the CLI would pass it: Pulumi.yaml defaults, then
Pulumi.<stack>.yaml, then the test's overrides; objects as JSON, secret keys listed as secret.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import runpy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings

from tests import computed

REPO = Path(__file__).resolve().parent.parent
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE = rpc._special_secret_sig


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    custom: bool
    inputs: dict[str, Any]
    parent: str
    dependencies: list[str]
    protect: bool
    delete_before_replace: bool
    retain_on_delete: bool
    ignore_changes: list[str]
    additional_secret_outputs: list[str]

    @property
    def plain_inputs(self) -> dict[str, Any]:
        """Inputs with secret markers removed (what the provider would receive)."""
        return unwrap(self.inputs)


@dataclass
class Evaluation:
    stack: str
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # as serialized: secrets still wrapped
    logs: list[str] = field(default_factory=list)
    error: Optional[BaseException] = None

    @property
    def plain_outputs(self) -> dict[str, Any]:
        return unwrap(self.outputs)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str) -> Registered:
        found = self.of_type(type_token)
        assert len(found) == 1, f"expected one {type_token}, found {[r.name for r in found]}"
        return found[0]

    def named(self, suffix: str) -> Registered:
        found = [r for r in self.resources if r.name.endswith(suffix)]
        assert len(found) == 1, f"expected one resource named *{suffix}, found {[r.name for r in found]}"
        return found[0]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def unwrap(value: Any) -> Any:
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def plain_text(value: Any) -> str:
    """Everything visible in `value` once secret-wrapped parts are cut out."""
    if is_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(f"{k} {plain_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(plain_text(v) for v in value)
    return str(value)


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, upstream: dict[str, dict[str, Any]]) -> None:
        self.upstream = upstream

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            return args.inputs["name"], self._stack_outputs(args.inputs["name"])
        state = {**args.inputs, **computed.outputs(args.typ, args.name, args.inputs)}
        # A provider module may answer a realistic id (an ARM path, an ARN) for ids built from it.
        return state.pop("id", f"{args.name}-id"), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "pulumi:pulumi:readStackOutputs":
            return self._stack_outputs(args.args["name"]), []
        return computed.invoke(args.token, args.args), []

    def _stack_outputs(self, name: str) -> dict[str, Any]:
        if name not in self.upstream:
            raise KeyError(f"test supplied no outputs for upstream stack {name}")
        return {"name": name, "outputs": copy.deepcopy(self.upstream[name]), "secretOutputNames": []}


class _Monitor(runtime_mocks.MockMonitor):
    """Records each registration with its options, which MockResourceArgs does not carry."""

    def __init__(self, mocks: _Mocks, evaluation: Evaluation) -> None:
        super().__init__(mocks)
        self.evaluation = evaluation

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        _mark_secret_outputs(response.object, request.additionalSecretOutputs)
        if request.type != "pulumi:pulumi:Stack":
            self.evaluation.resources.append(Registered(
                type=request.type, name=request.name, urn=response.urn, custom=request.custom,
                inputs=_raw_struct(request.object),
                parent=request.parent, dependencies=list(request.dependencies), protect=request.protect,
                delete_before_replace=request.deleteBeforeReplace,
                retain_on_delete=request.retainOnDelete,
                ignore_changes=list(request.ignoreChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
            ))
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        response = super().ReadResource(request)
        self.evaluation.resources.append(Registered(
            type=request.type, name=request.name, urn=response.urn, custom=True,
            inputs=_raw_struct(request.properties), parent=request.parent,
            dependencies=list(request.dependencies), protect=False, delete_before_replace=False,
            retain_on_delete=False, ignore_changes=[], additional_secret_outputs=[]))
        return response


def _mark_secret_outputs(state: Any, names: Any) -> None:
    """The engine makes a resource's additionalSecretOutputs secret (RandomPassword.result is one);
    the SDK's mock monitor does not, which would make generated passwords look plain."""
    from google.protobuf import json_format

    for name in names:
        if name in state.fields and not is_secret(json_format.MessageToDict(state).get(name)):
            value = json_format.MessageToDict(state)[name]
            state[name] = {SECRET_SIG: SECRET_VALUE, "value": value}


def _raw_struct(struct: Any) -> dict[str, Any]:
    """A protobuf Struct as plain Python, keeping secret markers in place."""
    from google.protobuf import json_format

    return json_format.MessageToDict(struct)


def _cli_value(value: Any) -> str:
    """How the Pulumi CLI hands a config value to the program."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _strip_secure(value: Any) -> Any:
    """Committed stack files may hold `secure:` blobs, which only the CLI can decrypt: tests supply them."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return None
    if isinstance(value, dict):
        kept = {k: _strip_secure(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None}
    return value


def stack_config(stack: str, overrides: Optional[dict[str, Any]] = None, secrets: Optional[dict[str, Any]] = None,
                 project_dir: Path = REPO) -> tuple[dict[str, str], list[str]]:
    """The config the CLI would pass for `stack`: (key -> value text, secret keys)."""
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    values: dict[str, Any] = {}
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if stack_file.exists():
        committed = yaml.safe_load(stack_file.read_text()) or {}
        for key, value in (committed.get("config") or {}).items():
            values[key] = _strip_secure(value)
    secret_keys: set[str] = set()
    for source, is_secret_source in ((overrides or {}, False), (secrets or {}, True)):
        for path, value in source.items():
            _set_path(values, path, value)
            if is_secret_source:
                secret_keys.add(path.split(".")[0].split("[")[0])
    # As the CLI does: a declared key takes its default when the stack does not set it, and a
    # declared key without a default is required.
    for key, spec in (project.get("config") or {}).items():
        full = key if ":" in key else f"{project['name']}:{key}"
        if values.get(full) is None:
            if "default" not in spec:
                raise MissingConfigError(f"Stack '{stack}' is missing configuration value '{full}'")
            values[full] = spec["default"]
    return {k: _cli_value(v) for k, v in values.items() if v is not None}, sorted(secret_keys)


class MissingConfigError(Exception):
    """What the Pulumi CLI says, before running the program, about a required project key."""


def _set_path(values: dict[str, Any], path: str, value: Any) -> None:
    """`siteline:smtp.password` style paths, like `pulumi config set --path`; None deletes."""
    top, _, rest = path.partition(".")
    if not rest:
        values[top] = value
        return
    node = values.setdefault(top, {})
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _capture(lines: list[str]) -> logging.Logger:
    """A logger that keeps what the program logs through pulumi.log, for the secret scans."""
    logger = logging.getLogger(f"siteline.evaluation.{id(lines)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.handlers = [_ListHandler(lines)]
    return logger


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def evaluate(stack: str, overrides: Optional[dict[str, Any]] = None, secrets: Optional[dict[str, Any]] = None,
             upstream: Optional[dict[str, dict[str, Any]]] = None, preview: bool = False,
             project_dir: Path = REPO, raise_errors: bool = False) -> Evaluation:
    """Run __main__.py for `stack` under mocks. Errors are returned, not raised, unless asked."""
    evaluation = Evaluation(stack=stack)
    config, secret_keys = stack_config(stack, overrides, secrets, project_dir)
    runtime_settings.reset_options(project="siteline", stack=stack, preview=preview)
    mocks = _Mocks(upstream or {})
    pulumi.runtime.set_mocks(mocks, project="siteline", stack=stack, preview=preview,
                             monitor=_Monitor(mocks, evaluation), logger=_capture(evaluation.logs))
    runtime_config.set_all_config(config, secret_keys)

    stored: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
        root = runtime_settings.get_root_resource()
        exported: dict[str, Any] = getattr(root, "outputs", {}) or {}

        async def serialize() -> dict[str, Any]:
            # Serialized as the engine stores them: secret outputs stay wrapped.
            for key, value in exported.items():
                stored[key] = await rpc.serialize_property(value, [], key)
            return stored

        return pulumi.Output.from_input(serialize())

    with _cwd(project_dir):
        try:
            run()
        except BaseException as error:
            if raise_errors:
                raise
            evaluation.error = error
    evaluation.outputs = stored
    return evaluation
