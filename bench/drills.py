"""Failure drills of the vps target on the rig, under load: nothing lost, the old release serving, re-runs converge.

Boots the rig (needs root) like bench/zero_downtime.py, deploys live (target vps, mail sink) by replaying its
command resources, seeds its database, and drives steady wrk load through nginx (--connections, loopback)
while each drill runs --repeat times. A drill's load window starts 2 s before it and ends 3 s after its re-run
(bench.zero_downtime.Bench.window), so the figures cover the failure, the check and the re-run:

  health fails     a release whose health check fails (503), then a fixed release
  migration fails  a release whose migration deletes rows then fails, then a fixed release
  corrupt package  the package's bytes changed after build (sha256 mismatch), then the right bytes
  SIGKILL          the release script's process tree killed (SIGKILL, from a second SSH session) after a random
                   delay, then the same update re-run
  SSH dropped      the client closes the release's SSH connection after a random delay, then the update re-run
  disk full        the releases directory (a small tmpfs mounted over it inside the rig) filled up before the
                   unpack, then freed and the update re-run
  refresh fails    a database refresh whose masking fails part-way (test stack, after live is destroyed: both
                   stacks would share /etc/siteline), then a good refresh id

Per drill: runs, non-2xx and socket errors over all its windows, how many runs kept the old release serving
through nginx right after the failure, how many re-runs converged (the release or copy config names serving
through nginx, `active`, its .release and `current` agreeing, exactly one colour running), and rows lost in
the live (and test) databases. Figures are printed, never asserted.

Usage (from the repository root, as root):
    venv/bin/python -m bench.drills [--repeat 3] [--connections 30] [--seconds 5] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from unittest import mock

from bench.zero_downtime import Bench
from tests.conftest import build_package
from tests.rig.server import Rig, unavailable_reason
from tests.rig.ssh import CommandResult, connect, run_command
from tests.vps import replay
from tests.vps.replay import StepError
from tests.vps.stack import SITE, RefreshReplayer, RigStack, health
from tests.vps.test_refresh_rig import LIVE_DB, SEED

BASE = "/srv/siteline"
COUNTS = ("SELECT (SELECT count(*) FROM people) || ' ' || (SELECT count(*) FROM contact_messages) || ' ' || "
          "(SELECT count(*) FROM site_settings)")
# Deletes rows, then fails: one transaction per release (migrate.py), so nothing may be lost.
BAD_MIGRATION = "DELETE FROM contact_messages;\nALTER TABLE people ADD COLUMN drill int;\nSELECT 1 / 0;\n"
# The release script's process tree, stopped first so it cannot fork while it is collected, then killed.
# The pattern's brackets keep this command's own shell from matching it.
KILL_TREE = ("tree() { local p; for p in \"$@\"; do echo \"$p\"; tree $(pgrep -P \"$p\"); done; }; "
             "pids=$(tree $(pgrep -f 'vps-releas[e].sh deploy')); [ -n \"$pids\" ] || { echo none; exit 0; }; "
             "kill -STOP $pids 2>/dev/null; kill -KILL $pids 2>/dev/null; echo killed $pids")
RELEASE_RUNNING = "pgrep -f 'vps-releas[e].sh deploy' >/dev/null"


@dataclass
class Run:
    non_2xx: int = 0
    socket_errors: int = 0
    old_kept: Optional[bool] = None
    converged: bool = False
    lost: str = "none"
    note: str = ""


@dataclass
class Drill:
    name: str
    runs: list[Run] = field(default_factory=list)
    goal_note: str = ""


class Drills(Bench):
    def __init__(self, rig: Rig, connections: int, seconds: int, workdir: Path, seed: int) -> None:
        super().__init__(rig, connections, seconds, workdir)
        self.workdir = workdir
        self.random = random.Random(seed)
        self.serving = self.releases["v1"]
        self.built = 0
        self.release_s = 5.0
        self.run: Run = Run()

    # --- packages ---------------------------------------------------------------------------------------------
    def fresh(self, source: Path = SITE) -> dict[str, str]:
        """A good (or `source`) package under a version never deployed before."""
        self.built += 1
        return build_package(f"2.{self.built}.0", self.workdir / f"build{self.built}", source=source)

    def bad_migration(self) -> dict[str, str]:
        source = self.workdir / "bad-migration-site"
        shutil.copytree(SITE, source, ignore=shutil.ignore_patterns("__pycache__", "dist"))
        (source / "migrations" / "999_drill_fails.sql").write_text(BAD_MIGRATION)
        return self.fresh(source)

    def corrupted(self, good: dict[str, str]) -> dict[str, str]:
        """The same release with bytes changed after the build: its sha256 no longer matches."""
        data = bytearray(Path(good["package"]).read_bytes())
        middle = len(data) // 2
        data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
        path = self.workdir / f"corrupted-{good['version']}.zip"
        path.write_bytes(bytes(data))
        return {**good, "package": str(path)}

    # --- state on the server ----------------------------------------------------------------------------------
    def sql(self, database: str, query: str) -> str:
        result = self.rig.run(f"cd / && runuser -u postgres -- psql -p {self.stack.db_port} -X -At "
                              f"-v ON_ERROR_STOP=1 -d {database}", stdin=query)
        if result.exit_status != 0:
            raise RuntimeError(f"{database}: {query}: {result.stderr}")
        return result.stdout.strip()

    def rows(self, databases: list[str]) -> dict[str, list[int]]:
        return {db: [int(n) for n in self.sql(db, COUNTS).split()] for db in databases}

    @staticmethod
    def lost(before: dict[str, list[int]], after: dict[str, list[int]]) -> str:
        tables = ("people", "contact_messages", "site_settings")
        lost = [f"{db}.{t} {b}->{a}" for db in before for t, b, a in zip(tables, before[db], after[db], strict=True)
                if a < b]
        return ", ".join(lost) or "none"

    def serving_version(self) -> tuple[int, str]:
        status, body = health(self.stack.url)
        return status, body.get("release", "") if isinstance(body, dict) else str(body)[:60]

    def converged(self, version: str, database: Optional[str] = None) -> tuple[bool, str]:
        """The release (and database) config names serves through nginx; active, .release and current agree;
        exactly one colour runs."""
        out = self.sh(f"a=$(cat /etc/siteline/active); echo \"$a\"; cut -d' ' -f1 /etc/siteline/$a.release; "
                      f"readlink {BASE}/current; systemctl is-active siteline@blue siteline@green || true; "
                      "grep ^DATABASE_URL= /etc/siteline/$a.env | sed 's|.*/||; s|\"||g'").split()
        active, release, current, blue, green, db = (out + [""] * 6)[:6]
        status, serving = self.serving_version()
        running = [c for c, s in (("blue", blue), ("green", green)) if s == "active"]
        problems = []
        if (status, serving) != (200, version):
            problems.append(f"nginx answers {status} {serving}")
        if release != version or current != f"{BASE}/releases/{version}":
            problems.append(f"active {active} holds {release}, current -> {current}")
        if running != [active]:
            problems.append(f"running colours {running}, active {active}")
        if database is not None and db != database:
            problems.append(f"serving database {db}, expected {database}")
        return not problems, "; ".join(problems)

    # --- one drill run inside a load window -------------------------------------------------------------------
    def measured(self, drill: Drill, body: Callable[[], None], databases: list[str]) -> None:
        self.run = Run()
        before = self.rows(databases)

        def release() -> str:
            try:
                body()
            except Exception as error:  # a drill's own failure is a figure, not a crash of the bench
                self.run.note += f" drill error: {str(error)[:300]}"
            return ""

        window = self.window(drill.name, release)
        self.run.non_2xx, self.run.socket_errors = window.non_2xx, window.socket_errors
        self.run.lost = self.lost(before, self.rows(databases))
        drill.runs.append(self.run)
        print(f"  {drill.name} run {len(drill.runs)}: {self.run}", flush=True)

    def up(self, release: dict[str, str]) -> Optional[StepError]:
        try:
            self.replayer.up(self.stack.evaluate(release))
        except StepError as failed:
            return failed
        self.serving = release
        return None

    def after_failure(self, failed: Optional[StepError], expect: str) -> None:
        """Right after the failure: did it fail as expected, and does the old release still serve through nginx?"""
        status, serving = self.serving_version()
        self.run.old_kept = (status, serving) == (200, self.serving["version"])
        if failed is not None:
            errors = [line for line in failed.stderr.splitlines() if "error" in line.lower()]
            self.run.note += f" refused: {(errors or [failed.stderr.strip()])[-1][-140:]};"
        if failed is None:
            self.run.note += " the bad release was NOT refused;"
        elif expect not in failed.stderr + failed.stdout:
            self.run.note += f" failed without {expect!r}: {failed.stderr.strip()[-200:]};"
        if not self.run.old_kept:
            self.run.note += f" after the failure nginx answered {status} {serving};"

    def rerun(self, release: dict[str, str]) -> None:
        failed = self.up(release)
        if failed is not None:
            self.run.note += f" re-run failed: {failed.stderr.strip()[-300:]};"
        self.run.converged, why = self.converged(release["version"])
        if not self.run.converged:
            self.run.note += f" not converged: {why};"

    def bad_release(self, bad: dict[str, str], expect: str, fix: Callable[[], dict[str, str]]) -> Callable[[], None]:
        def body() -> None:
            self.after_failure(self.up(bad), expect)
            self.rerun(fix())
        return body

    def killed(self) -> None:
        target = self.fresh()
        delay = self.random.uniform(0.1, self.release_s)
        kill: dict[str, str] = {}

        def killer() -> None:
            kill["out"] = self.sh(KILL_TREE).strip()

        def timed(connection: Any, command: str, environment: Any = None, stdin: Optional[str] = None,
                  timeout: float = 600.0) -> CommandResult:
            if "vps-release.sh deploy" not in command:
                return run_command(connection, command, environment=environment, stdin=stdin, timeout=timeout)
            timer = threading.Timer(delay, killer)  # counted from the start of the release command itself
            timer.start()
            try:
                return run_command(connection, command, environment=environment, stdin=stdin, timeout=timeout)
            finally:
                timer.join()

        previous = self.serving["version"]
        with mock.patch.object(replay, "run_command", timed):
            failed = self.up(target)
        at = last_step(failed.stdout) if failed else "after it finished"
        self.run.note += (f" {previous}->{target['version']} killed at {delay:.2f} s ({at}; "
                          f"{'nothing left to kill' if kill.get('out') == 'none' else 'tree killed'});")
        self.after_kill(target, failed, previous)

    def after_kill(self, target: dict[str, str], failed: Optional[StepError], previous: str) -> None:
        """After a kill: what serves now (old or new, never nothing), then the re-run."""
        status, serving = self.serving_version()
        self.run.old_kept = (status, serving) == (200, previous) or (status, serving) == (200, target["version"])
        self.run.note += f" then nginx answered {status} {serving};"
        if failed is None:
            self.serving = target
        self.rerun(target)

    def dropped(self) -> None:
        target = self.fresh()
        delay = self.random.uniform(0.1, self.release_s)
        state: dict[str, Any] = {}

        def dropping(connection: Any, command: str, environment: Any = None, stdin: Optional[str] = None,
                     timeout: float = 600.0) -> CommandResult:
            if "vps-release.sh deploy" not in command:
                return run_command(connection, command, environment=environment, stdin=stdin, timeout=timeout)
            client = connect(connection)
            channel = client.get_transport().open_session()  # type: ignore[union-attr]
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            finished = channel.status_event.wait(delay)
            output = b""
            while channel.recv_ready():
                output += channel.recv(65536)
            client.close()  # the drop: the server sees the connection go away mid-release
            state["dropped"] = not finished
            if finished:
                return CommandResult(channel.exit_status, output.decode(errors="replace"), "")
            return CommandResult(-1, output.decode(errors="replace"), "drill: connection dropped")

        previous = self.serving["version"]
        with mock.patch.object(replay, "run_command", dropping):
            failed = self.up(target)
        at = last_step(failed.stdout) if failed else "after it finished"
        self.run.note += f" {previous}->{target['version']} dropped at {delay:.2f} s ({at});"
        # The server side may still run (its output goes nowhere): see whether the re-run has to wait for it.
        orphan = self.rig.run(RELEASE_RUNNING).exit_status == 0
        if orphan:
            self.run.note += " the orphaned script was still running at the re-run;"
        status, serving = self.serving_version()
        self.run.old_kept = (status, serving) in ((200, previous), (200, target["version"]))
        self.run.note += f" then nginx answered {status} {serving};"
        retry = self.up(target)
        if retry is not None and "another release is running" in retry.stderr:
            self.run.note += " first re-run refused (lock held by the orphan), waited for it;"
            deadline = time.monotonic() + 120
            while self.rig.run(RELEASE_RUNNING).exit_status == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            self.run.note += " the orphan finished with nginx answering {} {};".format(*self.serving_version())
        elif retry is not None:
            self.run.note += f" first re-run failed: {retry.stderr.strip()[-200:]};"
        self.rerun(target)

    def mount_small_releases(self) -> str:
        """A 64 MB tmpfs over releases/, holding a copy of what was there (the serving process keeps its cwd)."""
        script = (f"set -e; cd {BASE}; rm -rf .releases-drill; cp -a releases .releases-drill; "
                  f"mount -t tmpfs -o size=64m,mode=755 siteline-drill {BASE}/releases; "
                  f"cp -a .releases-drill/. releases/; rm -rf .releases-drill")
        result = self.rig.run(script)
        if result.exit_status == 0:
            return "tmpfs mounted inside the rig"
        # nspawn may withhold CAP_SYS_ADMIN: mount from the host into the rig's mount namespace only.
        pid = self.rig._init_pid
        self.sh(f"cd {BASE}; rm -rf .releases-drill; cp -a releases .releases-drill")
        subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "mount", "-t", "tmpfs", "-o", "size=64m,mode=755",
                        "siteline-drill", f"{BASE}/releases"], check=True)
        self.sh(f"cd {BASE}; cp -a .releases-drill/. releases/; rm -rf .releases-drill")
        return f"tmpfs mounted from the host (in the rig: {result.stderr.strip()[:80]})"

    def unmount_small_releases(self) -> None:
        """Lazily, so the instance still running from it keeps its files until the destroy stops it."""
        if self.rig.run(f"umount -l {BASE}/releases").exit_status != 0:
            subprocess.run(["nsenter", "-t", str(self.rig._init_pid), "-m", "--", "umount", "-l",
                            f"{BASE}/releases"], check=True)

    def disk_full(self) -> None:
        target = self.fresh()
        # Fill all but 8 KB: the package (in packages/, another filesystem) is copied, then the unpack fails.
        self.sh(f"free=$(df --output=avail -B1 {BASE}/releases | tail -1); "
                f"fallocate -l $((free - 8192)) {BASE}/releases/.filler")
        failed = self.up(target)
        self.after_failure(failed, "No space left on device")
        self.sh(f"rm -f {BASE}/releases/.filler")
        self.rerun(target)


def last_step(stdout: str) -> str:
    steps = [line.split("] ", 1)[-1] for line in stdout.splitlines() if line.startswith("[siteline")]
    return f"last step: {steps[-1][:70]}" if steps else "before its first step"


class RefreshDrill:
    """test on the rig, refreshed from a seeded `live_site` database there (as tests/vps/test_refresh_rig)."""

    def __init__(self, drills: Drills) -> None:
        self.drills = drills
        drills.stack = RigStack.on(drills.rig.connection)
        drills.stack.health_timeout = 10
        drills.replayer = RefreshReplayer()
        self.release = drills.releases["v1"]
        self.source = {"engine": "postgres", "host": "127.0.0.1", "port": drills.stack.db_port, "name": LIVE_DB,
                       "id": f"ssh://root@127.0.0.1:{drills.rig.connection.port}/{LIVE_DB}",
                       "hostKey": drills.rig.connection.host_key}
        self.copy = ""
        self.count = 0

    def up(self, refresh_id: Optional[str], mask: Optional[list[dict[str, str]]] = None) -> Optional[StepError]:
        try:
            self.drills.replayer.up(self.drills.stack.evaluate_refreshing(self.release, refresh_id, self.source, mask))
        except StepError as failed:
            return failed
        return None

    def prepare(self) -> None:
        d = self.drills
        failed = self.up(None)
        if failed:
            raise failed
        d.sql("postgres", f"CREATE DATABASE {LIVE_DB}")
        url = f"postgresql:///{LIVE_DB}?host=/var/run/postgresql&port={d.stack.db_port}"
        d.sh(f"cd {BASE}/current && runuser -u postgres -- env DATABASE_URL='{url}' python3 migrate.py")
        d.sql(LIVE_DB, SEED)
        self.good()

    def good(self) -> Optional[StepError]:
        self.count += 1
        failed = self.up(f"d{self.count}")
        if failed is None:
            self.copy = f"site_rd{self.count}"
        return failed

    def body(self) -> None:
        d = self.drills
        broken = [{"table": "people", "column": "email", "strategy": "email"},
                  {"table": "people", "column": "no_such_column", "strategy": "null"}]
        copy_before = d.rows([self.copy])[self.copy]
        failed = self.up(f"bad{self.count}", broken)
        status, serving = d.serving_version()
        db = d.sh("a=$(cat /etc/siteline/active); grep ^DATABASE_URL= /etc/siteline/$a.env | sed 's|.*/||; s|\"||g'")
        d.run.old_kept = (status, serving, db.strip()) == (200, self.release["version"], self.copy)
        if failed is None or "masking" not in failed.stderr:
            d.run.note += f" the refresh did not fail while masking: {failed};"
        if not d.run.old_kept:
            d.run.note += f" after the failure: {status} {serving} on {db};"
        retry = self.good()
        if retry is not None:
            d.run.note += f" good refresh failed: {retry.stderr.strip()[-300:]};"
        copy_lost = d.lost({"copy": copy_before}, {"copy": d.rows([self.copy])[self.copy]})
        if copy_lost != "none":
            d.run.note += f" the new copy {self.copy} has fewer rows than the previous: {copy_lost};"
        d.run.converged, why = d.converged(self.release["version"], self.copy)
        if not d.run.converged:
            d.run.note += f" not converged: {why};"


def table(drills: list[Drill]) -> str:
    """One row per drill. The goal: no non-2xx, the old release serving after every failure, every re-run
    converged, no row lost. Socket errors are shown beside it (the control row is a plain good release)."""
    head = (f"{'drill':<16} {'runs':>4} {'non-2xx':>8} {'sock err':>8} {'old kept':>9} {'converged':>9} "
            f"{'data lost':<10} goal met")
    rows = [head, "-" * len(head)]
    for d in drills:
        runs = len(d.runs)
        non_2xx = sum(r.non_2xx for r in d.runs)
        errors = sum(r.socket_errors for r in d.runs)
        kept = sum(1 for r in d.runs if r.old_kept)
        converged = sum(1 for r in d.runs if r.converged)
        lost = "; ".join(sorted({r.lost for r in d.runs if r.lost != "none"})) or "none"
        met = runs > 0 and non_2xx == 0 and kept == runs and converged == runs and lost == "none"
        verdict = "yes" if met else "NO (see the runs below)"
        rows.append(f"{d.name:<16} {runs:>4} {non_2xx:>8} {errors:>8} {f'{kept}/{runs}':>9} "
                    f"{f'{converged}/{runs}':>9} {lost:<10} {verdict}{f' ({d.goal_note})' if d.goal_note else ''}")
    rows.append("")
    for d in drills:
        for number, r in enumerate(d.runs, 1):
            rows.append(f"{d.name} #{number}: non-2xx {r.non_2xx}, socket errors {r.socket_errors}, old kept "
                        f"{r.old_kept}, converged {r.converged}, lost {r.lost}.{r.note}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description="Failure drills of the vps target on the rig, under load.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=5, help="the least length of a drill's load window")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random kill/drop delays")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"drills: the rig cannot run here: {reason}")
        return 2
    seed = args.seed if args.seed is not None else int(time.time())
    started = time.monotonic()
    drills: list[Drill] = []
    with Rig() as rig, tempfile.TemporaryDirectory() as workdir:
        bench = Drills(rig, args.connections, args.seconds, Path(workdir), seed)
        bench.prepare()
        bench.sql("site", SEED)
        live = ["site"]
        # One good release without load: the span the random kill and drop delays are drawn from.
        first = time.monotonic()
        bench.up(bench.fresh())
        bench.release_s = next(step.seconds for step in reversed(bench.replayer.journal.steps)
                               if step.name.endswith("-release"))
        print(f"the first up took {time.monotonic() - first:.1f} s", flush=True)
        print(f"a good release command takes {bench.release_s:.1f} s; seed {seed}", flush=True)
        bad_migration = bench.bad_migration()

        def fixed() -> dict[str, str]:
            return bench.fresh()

        corrupt_fixes: list[dict[str, str]] = []

        def corrupt_body() -> None:
            good = bench.fresh()
            corrupt_fixes.append(good)
            bench.after_failure(bench.up(bench.corrupted(good)), "has sha256")
            bench.rerun(good)

        def control() -> None:
            bench.run.old_kept = bench.serving_version() == (200, bench.serving["version"])
            bench.rerun(bench.fresh())

        plan: list[tuple[str, Callable[[], None]]] = [
            ("control: good", control),
            ("health fails", bench.bad_release(bench.releases["v3"], "failed its health check", fixed)),
            ("migration fails", bench.bad_release(bad_migration, "migrations of", fixed)),
            ("corrupt package", corrupt_body),
            ("SIGKILL", bench.killed),
            ("SSH dropped", bench.dropped),
        ]
        for name, body in plan:
            drill = Drill(name)
            drills.append(drill)
            for _ in range(args.repeat):
                bench.measured(drill, body, live)
        disk = Drill("disk full")
        drills.append(disk)
        disk.goal_note = bench.mount_small_releases()
        for _ in range(args.repeat):
            bench.measured(disk, bench.disk_full, live)
        live_rows = bench.rows(live)
        bench.unmount_small_releases()
        bench.replayer.destroy()

        refresh = Drill("refresh fails")
        drills.append(refresh)
        refreshing = RefreshDrill(bench)
        refreshing.prepare()
        for _ in range(args.repeat):
            bench.measured(refresh, refreshing.body, [LIVE_DB, "site"])
        bench.replayer.destroy()
    print(f"\nwrk: {args.connections} connections, GET / through nginx on the rig; each run's window from 2 s before "
          f"the drill until 3 s after its re-run (at least {args.seconds} s); --repeat {args.repeat}, seed {seed}; "
          f"live rows (people, contact_messages, site_settings) at the end: {live_rows}; "
          f"total {time.monotonic() - started:.0f} s")
    print(table(drills))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
