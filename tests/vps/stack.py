"""A live stack with target vps pointed at the rig: packages, ports, evaluation, HTTP probes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from unittest import mock

from tests.conftest import MARKERS, build_package
from tests.harness import REPO, Evaluation, evaluate
from tests.replay import CommandState, commands
from tests.rig.ssh import Connection
from tests.vps import replay
from tests.vps.replay import Replayer, Step, StepError

SITE = REPO / "examples" / "site"
HEALTHZ = "    def healthz(self, environ: Mapping[str, Any]) -> Response:\n"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports below the ephemeral range (the rig shares the host's network)."""
    found: list[int] = []
    sockets = []
    try:
        for port in range(33000, 34000):
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.close()
                continue
            sockets.append(probe)
            found.append(port)
            if len(found) == count:
                return found
    finally:
        for probe in sockets:
            probe.close()
    raise RuntimeError(f"fewer than {count} free ports in 33000-34000")


def _variant(out: Path, name: str, healthz_prefix: str) -> Path:
    """A copy of the example site whose health check starts with `healthz_prefix`."""
    source = out / name
    shutil.copytree(SITE, source, ignore=shutil.ignore_patterns("__pycache__", "dist"), dirs_exist_ok=True)
    app = (source / "app.py").read_text()
    assert HEALTHZ in app, "examples/site/app.py changed: update HEALTHZ in tests/vps/stack.py"
    (source / "app.py").write_text(app.replace(HEALTHZ, HEALTHZ + healthz_prefix, 1))
    return source


def build_releases(out: Path) -> dict[str, dict[str, str]]:
    """v1 and v2 of the example site; v3 whose health check always fails (503); v4 healthy on its own
    port but failing behind nginx (it refuses proxied requests, as a site with a wrong trusted-proxy or
    allowed-host setting does); v5, good again."""
    broken = _variant(out, "broken-site", (
        '        return json_response(503, {"status": "error", "release": self.config.release,'
        ' "reason": "v3 is broken on purpose"})\n'))
    unproxied = _variant(out, "unproxied-site", (
        '        if environ.get("HTTP_X_FORWARDED_FOR"):\n'
        '            return json_response(503, {"status": "error", "release": self.config.release,'
        ' "reason": "v4 refuses proxied requests on purpose"})\n'))
    return {
        "v1": build_package("1.0.0", out),
        "v2": build_package("1.1.0", out),
        "v3": build_package("1.2.0", out, source=broken),
        "v4": build_package("1.3.0", out, source=unproxied),
        "v5": build_package("1.4.0", out),
    }


@dataclass
class RigStack:
    """The live stack, target vps, on a server reached at `connection`."""

    connection: Connection
    http_port: int
    blue_port: int
    green_port: int
    mail_port: int
    db_port: int
    health_timeout: int = 20
    drain_timeout: int = 10

    @classmethod
    def on(cls, connection: Connection) -> RigStack:
        return cls(connection, *free_ports(5))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def hosting(self) -> dict[str, Any]:
        return {
            "host": self.connection.host, "port": self.connection.port, "user": self.connection.user,
            "hostKey": self.connection.host_key, "httpPort": self.http_port, "listenAddress": "127.0.0.1",
            "bluePort": self.blue_port, "greenPort": self.green_port, "mailPort": self.mail_port,
            "dbPort": self.db_port, "drainTimeout": self.drain_timeout,
        }

    def evaluate(self, release: dict[str, str]) -> Evaluation:
        """`live` promoted from test, which verified `release`; one server, mail caught by the sink."""
        evaluation = evaluate(
            "live",
            overrides={
                "siteline:target": "vps", "siteline:hosting.vps": self.hosting(),
                "siteline:hosting.azure": None, "siteline:hosting.size": None, "siteline:hosting.instances": 1,
                "siteline:hosting.domain": None, "siteline:database.highAvailability": False,
                "siteline:database.version": "15", "siteline:database.size": None,
                "siteline:smtp.mode": "sink", "siteline:site.healthTimeout": self.health_timeout,
            },
            secrets={**MARKERS, "siteline:sshPrivateKey": self.connection.private_key},
            upstream={"organization/siteline/test": {"release": release, "verifiedRelease": release, "contract": 1}},
        )
        assert evaluation.error is None, f"live with target vps failed to evaluate: {evaluation.error}"
        return evaluation


    def evaluate_refreshing(self, release: dict[str, str], refresh_id: Optional[str], source: dict[str, Any],
                            mask: Optional[list[dict[str, str]]] = None) -> Evaluation:
        """`test` on this server, promoted from dev, refreshed from a mocked live vps stack whose `database`
        output is `source`; the mask rules are Pulumi.test.yaml's unless `mask` is given."""
        overrides: dict[str, Any] = {
            "siteline:target": "vps", "siteline:hosting.vps": self.hosting(), "siteline:hosting.azure": None,
            "siteline:hosting.size": None, "siteline:database.size": None, "siteline:smtp.mode": "sink",
            "siteline:smtp.allow": None, "siteline:site.healthTimeout": self.health_timeout,
            "siteline:database.retainOnDestroy": False,
        }
        if refresh_id is None:
            overrides["siteline:database.refreshFrom"] = None
        else:
            overrides["siteline:database.refreshId"] = refresh_id
        if mask is not None:
            overrides["siteline:database.mask"] = mask
        evaluation = evaluate(
            "test", overrides=overrides,
            secrets={**MARKERS, "siteline:sshPrivateKey": self.connection.private_key},
            upstream={"organization/siteline/dev": {"release": release, "contract": 1},
                      "organization/siteline/live": {"role": "live", "target": "vps", "contract": 1,
                                                     "database": source}})
        assert evaluation.error is None, f"test with target vps failed to evaluate: {evaluation.error}"
        return evaluation


LOCAL_COMMAND = "command:local:Command"


class RefreshReplayer(Replayer):
    """The vps Replayer plus the local.Command a refresh runs on the machine running pulumi: run with the
    provider's default interpreter (/bin/sh -c), its `environment` added to this process's, `stdin` piped."""

    def up(self, evaluation: Evaluation) -> None:
        with mock.patch.object(replay, "remote_commands", lambda ev: commands(ev, prefix="command:")):
            super().up(evaluation)

    def _run(self, step: str, command: CommandState) -> None:
        if command.type != LOCAL_COMMAND:
            super()._run(step, command)
            return
        started = time.monotonic()
        inputs = command.inputs
        script = inputs.get(step) or (inputs.get("create") if step == "update" else None)
        record = Step(step, command.name, 0.0)
        if script:
            env = {**os.environ, **{k: str(v) for k, v in (inputs.get("environment") or {}).items()}}
            done = subprocess.run(["/bin/sh", "-c", script], input=inputs.get("stdin") or "", capture_output=True,
                                  text=True, env=env, timeout=self.timeout)
            record.stdout, record.stderr = done.stdout, done.stderr
            if done.returncode != 0:
                record.seconds = time.monotonic() - started
                self._record(record)
                raise StepError(step, command.name, done.returncode, done.stdout, done.stderr)
        record.seconds = time.monotonic() - started
        self._record(record)


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def health(url: str) -> tuple[int, Any]:
    status, body = get(url + "/healthz")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body
