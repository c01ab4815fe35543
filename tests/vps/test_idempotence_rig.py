"""Idempotence on a real server: every command resource of live (target vps, mail sink), run a second time in a
row, changes nothing: the same release serves, no service restarts, no file under basePath or /etc/siteline
changes, and each script says so where it has a line for it.

The refresh command's own re-run is covered by tests/vps/test_refresh_rig.py
(test_the_same_refresh_id_runs_nothing_again); seeding a live database for it again would double this test's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig.server import Rig
from tests.vps.replay import COMMAND, Replayer
from tests.vps.stack import RigStack, build_package, health

pytestmark = pytest.mark.rig

BASE = "/srv/siteline"
# Every file the release, bootstrap and mail sink own, by content; mail the site sent and logs are data, not state.
LISTING = (f"find {BASE}/releases {BASE}/shared {BASE}/packages /etc/siteline /etc/nginx/siteline-upstream.conf "
           "/etc/nginx/sites-available/siteline /etc/systemd/system/siteline@.service "
           "/etc/systemd/system/siteline-mailsink.service /usr/local/lib/siteline "
           f"-path {BASE}/shared/mail -prune -o -name '*.log' -prune -o -type f -print0 "
           "| sort -z | xargs -0 sha256sum")
# What a second run must say instead of doing the work again, per resource name suffix.
NOTHING_TO_DO = {
    "-vps-release": "is already serving",
    "-vps-bootstrap": "packages present",
}


class Deployed:
    def __init__(self, rig: Rig, out: Path) -> None:
        self.rig = rig
        self.stack = RigStack.on(rig.connection)
        self.replayer = Replayer()
        self.replayer.up(self.stack.evaluate(build_package("1.0.0", out)))

    def sh(self, command: str) -> str:
        result = self.rig.run(command)
        assert result.exit_status == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def snapshot(self) -> dict[str, str]:
        active = self.sh("cat /etc/siteline/active")

        def show(unit: str, prop: str) -> str:
            return self.sh(f"systemctl show -p {prop} --value {unit}")

        return {
            "serving": str(health(self.stack.url)),
            "active": active,
            "current": self.sh(f"readlink {BASE}/current"),
            "running colours": self.sh("systemctl is-active siteline@blue siteline@green || true"),
            "active unit started": show(f"siteline@{active}", "ActiveEnterTimestamp"),
            "active unit pid": show(f"siteline@{active}", "MainPID"),
            "nginx master pid": show("nginx", "MainPID"),
            "nginx workers": self.sh("pgrep -f 'nginx: worker proces[s]' | sort | tr '\\n' ' '"),
            "postgres started": self.sh("systemctl show -p ActiveEnterTimestamp --value postgresql@15-main"),
            "mail sink pid": show("siteline-mailsink", "MainPID"),
            "files": self.sh(LISTING),
        }


@pytest.fixture(scope="module")
def deployed(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    live = Deployed(rig, tmp_path_factory.mktemp("idempotence-packages"))
    yield live
    live.replayer.destroy()


def test_every_command_run_twice_changes_nothing(deployed: Deployed) -> None:
    status, body = health(deployed.stack.url)
    assert status == 200 and body.get("release") == "1.0.0", body
    before = deployed.snapshot()
    assert before["running colours"].split().count("active") == 1, before["running colours"]
    assert before["files"], "the listing is empty: the comparison would prove nothing"
    scripts = [c for c in deployed.replayer.state if c.type == COMMAND]
    assert {s.name.rsplit("-", 2)[-1] for s in scripts} >= {"bootstrap", "sink", "release"}, [s.name for s in scripts]
    started = time.monotonic()
    for command in scripts:  # dependency order, as `pulumi up` would run them
        deployed.replayer._run("create", command)
        said = deployed.replayer.journal.steps[-1].stdout
        for suffix, line in NOTHING_TO_DO.items():
            if command.name.endswith(suffix):
                assert line in said, f"{command.name}, run again, did not say {line!r}:\n{said}"
    print(f"\nsecond run of {len(scripts)} command scripts: {time.monotonic() - started:.1f} s")
    after = deployed.snapshot()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"a second run changed: {changed}"
