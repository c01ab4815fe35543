"""Replay the command resources of a mocked evaluation, as pulumi-command would run them.

Semantics followed (pulumi-command v1):
- create runs on first `up`; delete runs on destroy, with the inputs the resource was created with;
- a change to `triggers` replaces the resource: create the new one, then delete the old one
  (the other way round with delete_before_replace);
- any other input change runs `update` (or `create` when there is no update);
- unchanged inputs run nothing;
- resources run in dependency order, deletes in reverse order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from tests.harness import Evaluation, Registered

DIFFED = ("create", "update", "delete", "environment", "stdin", "dir", "interpreter")


@dataclass(frozen=True)
class CommandState:
    name: str
    type: str
    inputs: dict[str, Any]
    dependencies: tuple[str, ...]
    urn: str
    delete_before_replace: bool = False

    def differs(self, other: CommandState) -> bool:
        return any(self.inputs.get(k) != other.inputs.get(k) for k in DIFFED)

    def replaced_by(self, other: CommandState) -> bool:
        return self.inputs.get("triggers") != other.inputs.get("triggers")


class Runner(Protocol):
    def __call__(self, step: str, command: CommandState) -> None: ...


@dataclass
class Journal:
    """What ran, in order: (step, resource name)."""

    steps: list[tuple[str, str]] = field(default_factory=list)


class CommandError(Exception):
    def __init__(self, step: str, name: str, code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{step} of {name} exited {code}:\n{stdout[-2000:]}\n{stderr[-2000:]}")
        self.stdout, self.stderr, self.code = stdout, stderr, code


def commands(evaluation: Evaluation, prefix: str = "command:") -> list[CommandState]:
    """The evaluation's command resources, in dependency order."""
    assert evaluation.error is None, f"evaluation failed: {evaluation.error}"
    chosen = [r for r in evaluation.resources if r.type.startswith(prefix)]
    by_urn = {r.urn: r for r in chosen}
    ordered: list[Registered] = []
    seen: set[str] = set()

    def visit(resource: Registered) -> None:
        if resource.urn in seen:
            return
        seen.add(resource.urn)
        for dependency in resource.dependencies:
            if dependency in by_urn:
                visit(by_urn[dependency])
        ordered.append(resource)

    for resource in chosen:
        visit(resource)
    return [CommandState(r.name, r.type, r.plain_inputs, tuple(d for d in r.dependencies if d in by_urn), r.urn,
                         r.delete_before_replace) for r in ordered]


def up(desired: list[CommandState], current: Optional[list[CommandState]], run: Runner,
       journal: Optional[Journal] = None) -> list[CommandState]:
    """Bring `current` to `desired`; returns the new state. A failing command stops the update there."""
    journal = journal or Journal()
    before = {c.name: c for c in current or []}
    state: dict[str, CommandState] = dict(before)
    for command in desired:
        old = before.get(command.name)
        if old is None:
            run("create", command)
        elif old.replaced_by(command) and command.delete_before_replace:
            run("delete", old)
            run("create", command)
        elif old.replaced_by(command):
            run("create", command)
            run("delete", old)
        elif old.differs(command):
            run("update" if command.inputs.get("update") else "create", command)
        else:
            continue
        journal.steps.append(("create" if old is None else "update", command.name))
        state[command.name] = command
    wanted = {c.name for c in desired}
    for old in reversed(current or []):
        if old.name not in wanted:
            run("delete", old)
            journal.steps.append(("delete", old.name))
            state.pop(old.name)
    return [state[c.name] for c in desired if c.name in state]


def destroy(current: list[CommandState], run: Runner) -> None:
    for command in reversed(current):
        run("delete", command)


def local_runner(wrap: Callable[[list[str]], list[str]], base_env: dict[str, str], cwd: str,
                 log: Optional[list[str]] = None, timeout: float = 300) -> Runner:
    """Run local.Command steps with bash, as the provider does: environment merged, stdin piped."""

    def run(step: str, command: CommandState) -> None:
        script = command.inputs.get(step) or (command.inputs.get("create") if step == "update" else None)
        if not script:
            return
        env = {**base_env, **{k: str(v) for k, v in (command.inputs.get("environment") or {}).items()}}
        done = subprocess.run(wrap(["bash", "-c", script]), input=command.inputs.get("stdin") or "",
                              capture_output=True, text=True, env=env, cwd=command.inputs.get("dir") or cwd,
                              timeout=timeout)
        if log is not None:
            log.append(f"$ {step} {command.name}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise CommandError(step, command.name, done.returncode, done.stdout, done.stderr)

    return run
