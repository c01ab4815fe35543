"""Replays the remote command resources of a mocked evaluation against a server, as pulumi-command would.

Semantics (pulumi-command v1, remote):
- resources run in dependency order on `up`, in reverse order on destroy;
- a new resource runs `create`; a resource whose inputs changed runs `update` (or `create` when it
  has none), except that a change to `triggers` replaces it: create the new one, then delete the old
  one (delete first under `delete_before_replace`);
- `delete` runs on destroy (and on removal from the program) with the inputs it was created with;
- a failing command stops the update there and the state keeps the old inputs of that resource;
- each command runs on a fresh SSH connection made from its own `connection` input (the pinned host
  key is checked); `environment` goes out as SSH setenv requests, which a stock sshd drops; `stdin`
  is written to the command;
- CopyToRemote copies its FileAsset/StringAsset over SFTP on create and on a changed source or
  remotePath; its delete leaves the files, as the provider does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from tests.harness import Evaluation
from tests.replay import CommandState, commands
from tests.rig.ssh import Connection, connect, copy_to_remote, run_command

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
# Inputs whose change makes the provider run the resource again.
DIFFED = {
    COMMAND: ("create", "update", "delete", "environment", "stdin", "connection", "dir"),
    COPY: ("source", "remotePath", "connection"),
}


class StepError(Exception):
    """A create/update/delete exited non-zero: the provider's failed operation."""

    def __init__(self, step: str, name: str, code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{step} of {name} exited {code}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
        self.step, self.name, self.code, self.stdout, self.stderr = step, name, code, stdout, stderr


@dataclass
class Step:
    step: str
    name: str
    seconds: float
    stdout: str = ""
    stderr: str = ""


@dataclass
class Journal:
    """What ran, in order, with its output and duration."""

    steps: list[Step] = field(default_factory=list)

    def names(self) -> list[tuple[str, str]]:
        return [(s.step, s.name) for s in self.steps]

    def output(self, name: str) -> str:
        return "".join(s.stdout + s.stderr for s in self.steps if s.name == name)


def remote_commands(evaluation: Evaluation) -> list[CommandState]:
    """The evaluation's remote command and copy resources, in dependency order."""
    return commands(evaluation, prefix="command:remote:")


def _connection(value: dict[str, Any]) -> Connection:
    return Connection(host=value["host"], port=int(value.get("port", 22)), user=value.get("user", "root"),
                      private_key=value["privateKey"], host_key=value["hostKey"])


def _changed(old: CommandState, new: CommandState) -> bool:
    return any(old.inputs.get(key) != new.inputs.get(key) for key in DIFFED.get(new.type, ()))


class Replayer:
    """Holds the replayed state between `up`s, like a stack's checkpoint."""

    def __init__(self, timeout: float = 900.0, delete_before_replace: Optional[set[str]] = None,
                 on_step: Optional[Callable[[Step], None]] = None) -> None:
        self.state: list[CommandState] = []
        self.journal = Journal()
        self.timeout = timeout
        self.delete_before_replace = delete_before_replace or set()
        self.on_step = on_step

    def up(self, evaluation: Evaluation) -> None:
        """`pulumi up` to this evaluation; raises StepError where the provider would fail."""
        desired = remote_commands(evaluation)
        before = {c.name: c for c in self.state}
        state = dict(before)
        try:
            for command in desired:
                old = before.get(command.name)
                if old is None:
                    self._run("create", command)
                elif old.replaced_by(command):
                    if command.name in self.delete_before_replace:
                        self._run("delete", old)
                        self._run("create", command)
                    else:
                        self._run("create", command)
                        self._run("delete", old)
                elif _changed(old, command):
                    self._run("update", command)
                else:
                    continue
                state[command.name] = command
            wanted = {c.name for c in desired}
            for old in reversed(self.state):
                if old.name not in wanted:
                    self._run("delete", old)
                    state.pop(old.name)
        finally:
            order = [c.name for c in desired] + [c.name for c in self.state if c.name not in {d.name for d in desired}]
            self.state = [state[name] for name in order if name in state]

    def destroy(self) -> None:
        for command in reversed(list(self.state)):
            self._run("delete", command)
            self.state.remove(command)

    def _run(self, step: str, command: CommandState) -> None:
        started = time.monotonic()
        inputs = command.inputs
        connection = _connection(inputs["connection"])
        record = Step(step, command.name, 0.0)
        if command.type == COPY:
            if step != "delete":
                self._copy(connection, inputs["source"], inputs["remotePath"])
        else:
            script = inputs.get(step) or (inputs.get("create") if step == "update" else None)
            if script:
                result = run_command(connection, script, environment=inputs.get("environment"),
                                     stdin=inputs.get("stdin"), timeout=self.timeout)
                record.stdout, record.stderr = result.stdout, result.stderr
                if result.exit_status != 0:
                    record.seconds = time.monotonic() - started
                    self._record(record)
                    raise StepError(step, command.name, result.exit_status, result.stdout, result.stderr)
        record.seconds = time.monotonic() - started
        self._record(record)

    def _record(self, record: Step) -> None:
        self.journal.steps.append(record)
        if self.on_step:
            self.on_step(record)

    @staticmethod
    def _copy(connection: Connection, source: dict[str, Any], remote_path: str) -> None:
        if "path" in source:
            copy_to_remote(connection, source["path"], remote_path)
            return
        with connect(connection) as client, client.open_sftp() as sftp, sftp.open(remote_path, "w") as remote:
            remote.write(source["text"])
