"""Benchmark: the local target's release time, v1 -> v2 and back, against a bare restart.

The release is the dev stack's release command replayed for real (verify sha256, unpack, migrate,
stop the old site, start the new one, health check, switch `current`, prune). The baseline, in the
same run, is the least any stop-then-start switch costs: stopping the running site and starting the
same release again until its health check answers. Figures are wall seconds and ratios.

    venv/bin/python bench/local_release.py [--runs 5]      (as root it runs the site as siteline-test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import REPO
from tests.local.site import Site, package, running_site, why_not

RESTART = r"""
set -euo pipefail
. "$SCRIPTS/local-lib.sh"
stop_pid "$HOME_DIR/site.pid" 20
setsid bash -c 'echo $$ >"$1"; cd "$2"; set -a; . "$3"; set +a; export PORT="$4"; exec bash -c "$5"' \
  _ "$HOME_DIR/site.pid" "$HOME_DIR/current" "$HOME_DIR/shared/app.env" "$PORT" "$START" \
  </dev/null >>"$HOME_DIR/site.log" 2>&1 &
healthy "http://127.0.0.1:$PORT/healthz" "$VERSION" 60
"""


def restart(site: Site, version: str) -> float:
    """Stop and start the serving release, as the baseline switch."""
    release = next(c for c in site.state if c.name.endswith("-release"))
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(site.root),
           "SCRIPTS": str(REPO / "components" / "scripts"), "HOME_DIR": str(site.home),
           "PORT": str(site.ports["site"]), "START": release.inputs["environment"]["SITE_START"], "VERSION": version}
    started = time.monotonic()
    subprocess.run(site.wrap(["bash", "-c", RESTART]), env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = why_not()
    if reason:
        raise SystemExit(reason)
    with running_site() as site:
        releases = [package(site.root, "1.0.0"), package(site.root, "2.0.0")]
        site.up(releases[0])
        release_times, restart_times = [], []
        for run in range(args.runs):
            target = releases[(run + 1) % 2]
            release_times.append(site.up(target))
            restart_times.append(restart(site, target["version"]))
        release, baseline = statistics.median(release_times), statistics.median(restart_times)
        print(f"{'case':<34}{'median s':>10}{'min s':>8}{'max s':>8}{'x baseline':>12}")
        print(f"{'release (v1 <-> v2, full script)':<34}{release:>10.2f}{min(release_times):>8.2f}"
              f"{max(release_times):>8.2f}{release / baseline:>12.2f}")
        print(f"{'baseline: restart same release':<34}{baseline:>10.2f}{min(restart_times):>8.2f}"
              f"{max(restart_times):>8.2f}{1:>12.2f}")
        print(f"({args.runs} releases and {args.runs} restarts, alternating, one machine, same run)")


if __name__ == "__main__":
    main()
