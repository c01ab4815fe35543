"""The vps target on a real server: live, target vps, replayed over SSH; answers checked through nginx.

The tests in this module run in file order on one server: create v1, re-run it, update to v2,
the broken v3, v4 that fails only through nginx (switched back), the good v5, then destroy. Each
asserts on the site's real HTTP answers.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MARKER_VALUES
from tests.rig.server import Rig
from tests.vps.replay import Replayer, StepError
from tests.vps.stack import RigStack, build_releases, get, health

pytestmark = pytest.mark.rig


class Poller:
    """Keeps asking nginx for /healthz while a release runs; records (status, release) per answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = health(self.url)
            self.answers.append((status, body.get("release", "") if isinstance(body, dict) else str(body)[:80]))
            time.sleep(0.01)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Deployment:
    def __init__(self, rig: Rig, out: Path) -> None:
        self.rig = rig
        self.stack = RigStack.on(rig.connection)
        self.releases = build_releases(out)
        self.replayer = Replayer()
        self.timings: dict[str, float] = {}

    def up(self, version: str) -> None:
        started = time.monotonic()
        try:
            self.replayer.up(self.stack.evaluate(self.releases[version]))
        finally:
            self.timings[version] = time.monotonic() - started

    def sh(self, command: str) -> str:
        result = self.rig.run(command)
        assert result.exit_status == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout.strip()


@pytest.fixture(scope="module")
def deployment(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployed = Deployment(rig, tmp_path_factory.mktemp("vps-packages"))
    yield deployed
    if deployed.replayer.state:  # a test failed before destroy: leave the shared rig clean
        deployed.replayer.destroy()
    print(f"\nvps rig timings (s): {deployed.timings}")


def test_v1_is_created_and_served_through_nginx(deployment: Deployment) -> None:
    deployment.up("v1")
    names = [name for step, name in deployment.replayer.journal.names() if step == "create"]
    assert names[0] == "live-vps-bootstrap" and names[-1] == "live-vps-release"
    assert sorted(names[1:-1]) == ["live-vps-mail-sink", "live-vps-mail-sink-copy", "live-vps-package"]
    assert names.index("live-vps-mail-sink-copy") < names.index("live-vps-mail-sink")
    assert health(deployment.stack.url) == (200, {"status": "ok", "release": "1.0.0", "database": "ok"})
    status, page = get(deployment.stack.url + "/")
    assert status == 200 and "Release 1.0.0" in page


def test_rerunning_the_same_release_is_a_no_op(deployment: Deployment) -> None:
    release = next(c for c in deployment.replayer.state if c.name == "live-vps-release")
    before = deployment.sh("cat /etc/siteline/active")
    result = deployment.rig.run(release.inputs["create"], stdin=release.inputs["stdin"])
    assert result.exit_status == 0, result.stderr
    assert "already serving" in result.stdout and "nothing to do" in result.stdout
    assert deployment.sh("cat /etc/siteline/active") == before


def test_the_server_is_locked_down(deployment: Deployment) -> None:
    colour = deployment.sh("cat /etc/siteline/active")
    assert deployment.sh(f"stat -c '%U:%G %a' /etc/siteline/{colour}.env") == "root:siteline 640"
    assert deployment.sh("stat -c '%U:%G %a' /etc/systemd/system/siteline@.service") == "root:root 644"
    locked = (f"/etc/siteline/{colour}.env", "/etc/systemd/system/siteline@.service", "/srv/siteline/current/app.py")
    for path in locked:
        writable = deployment.rig.run(f"runuser -u siteline -- test -w {path}")
        assert writable.exit_status != 0, f"the app user can write {path}"
    # The env file holds the secrets; the app reads it through systemd, nothing prints it.
    assert any(marker in deployment.sh(f"cat /etc/siteline/{colour}.env") for marker in MARKER_VALUES)
    port = deployment.stack.db_port
    listen = deployment.sh(f"cd / && runuser -u postgres -- psql -p {port} -tAc 'SHOW listen_addresses'")
    assert listen == "localhost"


def test_contact_mail_lands_in_the_sink(deployment: Deployment) -> None:
    form = urllib.parse.urlencode({"name": "Ada", "email": "ada@example.org", "message": "Hello"}).encode()
    request = urllib.request.Request(deployment.stack.url + "/contact", data=form, method="POST")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=10)
    assert redirect.value.code == 303
    deadline = time.monotonic() + 10
    while not deployment.sh("ls /srv/siteline/shared/mail") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Contact form: Ada" in deployment.sh("cat /srv/siteline/shared/mail/*.eml")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Keeps the 303 visible: the form's answer is the redirect itself."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


def test_v2_switches_colours_without_a_failed_request(deployment: Deployment) -> None:
    before = deployment.sh("cat /etc/siteline/active")
    with Poller(deployment.stack.url) as poller:
        deployment.up("v2")
    after = deployment.sh("cat /etc/siteline/active")
    assert after != before
    assert poller.answers, "the poller never got an answer"
    assert {status for status, _ in poller.answers} == {200}, poller.answers
    releases = [release for _, release in poller.answers]
    assert set(releases) <= {"1.0.0", "1.1.0"} and releases[-1] == "1.1.0"
    assert health(deployment.stack.url)[1]["release"] == "1.1.0"
    assert deployment.sh(f"systemctl is-active siteline@{before} || true") == "inactive"
    assert deployment.sh("readlink /srv/siteline/current") == "/srv/siteline/releases/1.1.0"


def test_broken_v3_fails_and_v2_keeps_serving(deployment: Deployment) -> None:
    with Poller(deployment.stack.url) as poller, pytest.raises(StepError) as failed:
        deployment.up("v3")
    assert failed.value.name == "live-vps-release"
    assert "release 1.2.0 failed its health check" in failed.value.stderr
    assert "1.1.0 keeps serving" in failed.value.stderr
    assert poller.answers and set(poller.answers) == {(200, "1.1.0")}
    status, page = get(deployment.stack.url + "/")
    assert status == 200 and "Release 1.1.0" in page
    # The state keeps v2, as the engine does after a failed update.
    release = next(c for c in deployment.replayer.state if c.name == "live-vps-release")
    assert "VERSION=1.1.0" in release.inputs["create"]


def test_v4_failing_through_nginx_is_switched_back(deployment: Deployment) -> None:
    """v4 is healthy on its own port but answers 503 to proxied requests: the check after the switch
    fails, and the release puts nginx back on v2's colour, stops v4's and leaves `active` alone."""
    serving = deployment.sh("cat /etc/siteline/active")
    with Poller(deployment.stack.url) as poller, pytest.raises(StepError) as failed:
        deployment.up("v4")
    assert failed.value.name == "live-vps-release"
    assert "siteline@" + ("green" if serving == "blue" else "blue") + " is healthy" in failed.value.stdout
    assert "release 1.3.0 is healthy on 127.0.0.1:" in failed.value.stderr
    assert "but not through nginx" in failed.value.stderr
    assert "nginx is switched back and 1.1.0 keeps serving" in failed.value.stderr
    # Between the switch and the switch back, visitors may see v4's 503s; before and after, only v2.
    assert poller.answers and set(poller.answers) <= {(200, "1.1.0"), (503, "1.3.0")}, poller.answers
    assert poller.answers[-1] == (200, "1.1.0")
    assert health(deployment.stack.url) == (200, {"status": "ok", "release": "1.1.0", "database": "ok"})
    port = deployment.stack.blue_port if serving == "blue" else deployment.stack.green_port
    assert deployment.sh("cat /etc/nginx/siteline-upstream.conf") == f"server 127.0.0.1:{port};"
    assert deployment.sh("cat /etc/siteline/active") == serving
    assert deployment.sh(f"systemctl is-active siteline@{serving}") == "active"
    assert deployment.sh("systemctl is-active siteline@blue siteline@green || true").count("inactive") == 1
    assert deployment.sh("readlink /srv/siteline/current") == "/srv/siteline/releases/1.1.0"
    release = next(c for c in deployment.replayer.state if c.name == "live-vps-release")
    assert "VERSION=1.1.0" in release.inputs["create"]


def test_the_next_good_release_after_a_switch_back_has_no_downtime(deployment: Deployment) -> None:
    """`active` still names v2's colour, so v5 goes to the other one and never stops the one serving."""
    before = deployment.sh("cat /etc/siteline/active")
    with Poller(deployment.stack.url) as poller:
        deployment.up("v5")
    assert deployment.sh("cat /etc/siteline/active") != before
    assert poller.answers and {status for status, _ in poller.answers} == {200}, poller.answers
    releases = [release for _, release in poller.answers]
    assert set(releases) <= {"1.1.0", "1.4.0"} and releases[-1] == "1.4.0"
    assert deployment.sh(f"systemctl is-active siteline@{before} || true") == "inactive"
    assert deployment.sh("readlink /srv/siteline/current") == "/srv/siteline/releases/1.4.0"


def test_a_release_killed_after_the_switch_is_rerun_without_downtime(deployment: Deployment) -> None:
    """A kill between nginx's reload and recording `active` leaves nginx on the new colour while
    `active` names the old one, still running. The re-run must believe nginx, not `active`."""
    serving = deployment.sh("cat /etc/siteline/active")
    old = "blue" if serving == "green" else "green"
    deployment.sh(f"echo {old} >/etc/siteline/active && systemctl start siteline@{old}")
    [release] = [c for c in deployment.replayer.state if c.name.endswith("-release")]
    with Poller(deployment.stack.url) as poller:
        deployment.replayer._run("create", release)
    assert "an earlier release stopped before recording the switch" in deployment.replayer.journal.steps[-1].stdout
    assert poller.answers and {status for status, _ in poller.answers} == {200}, poller.answers
    active = deployment.sh("cat /etc/siteline/active")
    assert deployment.sh(f"systemctl is-active siteline@{active}") == "active"
    other = "blue" if active == "green" else "green"
    assert deployment.sh(f"systemctl is-active siteline@{other} || true") == "inactive"
    assert deployment.sh("readlink /srv/siteline/current") == "/srv/siteline/releases/1.4.0"


def test_destroy_removes_the_site_and_keeps_the_database(deployment: Deployment) -> None:
    started = time.monotonic()
    deployment.replayer.destroy()
    deployment.timings["destroy"] = time.monotonic() - started
    # The reload that drops the site is asynchronous: give nginx's master a moment to close the port.
    deadline = time.monotonic() + 10
    while get(deployment.stack.url + "/")[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get(deployment.stack.url + "/")[0] == 0, "nginx still answers on the site's port"
    assert deployment.sh("systemctl list-units --all --no-legend --plain 'siteline*' | grep -v not-found || true") == ""
    assert deployment.sh("ls /etc/nginx/sites-enabled /etc/systemd/system | grep siteline || true") == ""
    assert deployment.sh("test -e /etc/siteline && echo present || echo gone") == "gone"
    exists = deployment.sh(f"cd / && runuser -u postgres -- psql -p {deployment.stack.db_port} -tAc "
                           "\"SELECT 1 FROM pg_database WHERE datname = 'site'\"")
    assert exists == "1", "database.retainOnDestroy is true on live: the database must survive destroy"
