"""Zero-downtime benchmark of the vps target on the rig: load through nginx while releases run.

Boots the rig (a Debian server under systemd-nspawn; needs root), deploys live with target vps by
replaying its command resources (as tests/vps does), installs wrk from the rig's apt, then drives
steady load through nginx (wrk, --connections connections, loopback only) in five windows:

  steady          no release: the reference latency
  v1 -> v2        the blue/green release
  v3 rejected     a release whose health check fails (the old colour must keep serving)
  v4 switched bk  a release healthy on its own port but failing through nginx: switched in, then back
                  (its few error answers are the price of checking through nginx; the old colour serves after)
  naive           stop the serving instance, copy and unpack the package, start it again:
                  the stop-copy-start release blue/green avoids, as the baseline

A release window starts 2 s before the release and ends 3 s after it returned (never shorter than
--seconds): wrk runs until it is interrupted, so the figures cover the whole release, its health
waits and drain included. One table: total requests, non-2xx responses, socket errors, p50/p99
latency (and their ratio to steady state), the load's and the release's duration. Figures are
printed, never asserted.

Usage (from the repository root, as root):
    venv/bin/python -m bench.zero_downtime [--connections 30] [--seconds 15] [--json bench/results/zero_downtime.json]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from tests.rig.server import Rig, unavailable_reason
from tests.vps.replay import Replayer, StepError
from tests.vps.stack import RigStack, build_releases, health

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
# Load before a release starts and after it has returned; a release window never outlasts MAX_WINDOW_S.
LEAD_S, MARGIN_S, MAX_WINDOW_S = 2.0, 3.0, 1800
WRK_PID = "/tmp/siteline-bench-wrk.pid"


@dataclass
class Window:
    case: str
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    load_s: float
    release_s: Optional[float]
    outcome: str


def parse_wrk(output: str) -> tuple[int, int, int, float, float, float]:
    """(requests, non-2xx/3xx, socket errors, p50 ms, p99 ms, seconds of load) from `wrk --latency` output."""
    done = re.search(r"(\d+) requests in ([\d.]+\w+),", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(value) * UNITS[unit]

    return (int(done.group(1)), int(non_2xx.group(1)) if non_2xx else 0,  # type: ignore[union-attr]
            sum(int(n) for n in errors.groups()) if errors else 0, ms(percentiles["50"]), ms(percentiles["99"]),
            ms(done.group(2)) / 1000)  # type: ignore[union-attr]


class Bench:
    def __init__(self, rig: Rig, connections: int, seconds: int, workdir: Path) -> None:
        self.rig = rig
        self.connections = connections
        self.seconds = seconds
        self.stack = RigStack.on(rig.connection)
        self.stack.health_timeout = 10
        self.releases = build_releases(workdir)
        self.replayer = Replayer()

    def sh(self, command: str, timeout: float = 600) -> str:
        result = self.rig.run(command, timeout=timeout)
        if result.exit_status != 0:
            raise RuntimeError(f"{command}: {result.stdout}{result.stderr}")
        return result.stdout

    def prepare(self) -> None:
        self.replayer.up(self.stack.evaluate(self.releases["v1"]))
        self.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null")

    def window(self, case: str, release: Optional[Callable[[], str]]) -> Window:
        """Load through nginx. Without a release, for `seconds`. With one, the release starts LEAD_S in and
        the load runs until MARGIN_S after the release returned (and at least `seconds`): wrk runs with
        a long duration and is stopped by SIGINT, on which it reports, so one run covers the whole
        release however long its health waits and drain take, and its percentiles are exact."""
        load: dict[str, str] = {}
        url = f"{self.stack.url}/"
        duration_s = self.seconds if release is None else MAX_WINDOW_S
        command = (f"rm -f {WRK_PID}; wrk --latency -t 2 -c {self.connections} -d {duration_s}s --timeout 5s {url} "
                   f"& echo $! >{WRK_PID}; wait $!")

        def run_wrk() -> None:
            load["out"] = self.sh(command, timeout=duration_s + 60)

        thread = threading.Thread(target=run_wrk)
        load_started = time.monotonic()
        thread.start()
        duration, outcome = None, "-"
        if release is not None:
            time.sleep(LEAD_S)
            started = time.monotonic()
            outcome = release()
            duration = time.monotonic() - started
            time.sleep(max(MARGIN_S, self.seconds - (time.monotonic() - load_started)))
            self.sh(f'kill -INT "$(cat {WRK_PID})"')
        thread.join()
        requests, non_2xx, errors, p50, p99, load_s = parse_wrk(load["out"])
        if duration is not None and load_s < LEAD_S + duration + MARGIN_S - 1:
            raise RuntimeError(f"{case}: wrk ran {load_s:.1f} s, less than the release ({duration:.1f} s) and margins")
        return Window(case, requests, non_2xx, errors, p50, p99, load_s, duration, outcome)

    def blue_green(self, version: str) -> Callable[[], str]:
        def release() -> str:
            try:
                self.replayer.up(self.stack.evaluate(self.releases[version]))
            except StepError as failed:
                reason = ("switched back" if "switched back" in failed.stderr else
                          "health check failed" if "health check" in failed.stderr else f"exit {failed.code}")
                return f"rejected ({reason}); {health(self.stack.url)[1].get('release')} kept serving"
            return f"serving {health(self.stack.url)[1].get('release')}"
        return release

    def naive(self) -> Callable[[], str]:
        """Stop the serving instance, copy and unpack the package, start it, wait until it answers."""
        package = self.releases["v1"]

        def release() -> str:
            colour = self.sh("cat /etc/siteline/active").strip()
            self.sh(f"systemctl stop siteline@{colour}")
            self.rig.copy_to_remote(package["package"], "/srv/siteline/staging/naive.zip")
            self.sh("rm -rf /srv/siteline/releases/naive && python3 -m zipfile -e /srv/siteline/staging/naive.zip "
                    "/srv/siteline/releases/naive && rm /srv/siteline/staging/naive.zip && "
                    f"sed -i 's|^cd .*|cd /srv/siteline/releases/naive \\|\\| exit 1|' /etc/siteline/{colour}.run && "
                    f"systemctl start siteline@{colour}")
            deadline = time.monotonic() + 60
            while health(self.stack.url)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            return f"serving {health(self.stack.url)[1].get('release')}"
        return release


def table(windows: list[Window]) -> str:
    steady = windows[0]
    head = (f"{'case':<14} {'requests':>9} {'non-2xx':>8} {'sock err':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'p50/st':>7} {'p99/st':>7} {'load s':>7} {'release s':>9}  outcome")
    rows = [head, "-" * len(head)]
    for w in windows:
        release = f"{w.release_s:.1f}" if w.release_s is not None else "-"
        rows.append(f"{w.case:<14} {w.requests:>9} {w.non_2xx:>8} {w.socket_errors:>8} {w.p50_ms:>8.2f} "
                    f"{w.p99_ms:>8.2f} {w.p50_ms / steady.p50_ms:>7.2f} {w.p99_ms / steady.p99_ms:>7.2f} "
                    f"{w.load_s:>7.1f} {release:>9}  {w.outcome}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description="Zero-downtime benchmark of the vps target on the rig.")
    parser.add_argument("--connections", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=15,
                        help="length of the steady window, and the least length of a release window (default 15)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"zero_downtime: the rig cannot run here: {reason}")
        return 2
    with Rig() as rig, tempfile.TemporaryDirectory() as workdir:
        bench = Bench(rig, args.connections, args.seconds, Path(workdir))
        bench.prepare()
        windows = [
            bench.window("steady", None),
            bench.window("v1 -> v2", bench.blue_green("v2")),
            bench.window("v3 rejected", bench.blue_green("v3")),
            bench.window("v4 switched bk", bench.blue_green("v4")),
            bench.window("naive", bench.naive()),
        ]
        bench.replayer.destroy()
    print(f"wrk: {args.connections} connections, GET / through nginx on the rig; steady {args.seconds} s, a release "
          f"window from {LEAD_S:.0f} s before the release until {MARGIN_S:.0f} s after it (at least {args.seconds} s)")
    print(table(windows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(w) for w in windows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
