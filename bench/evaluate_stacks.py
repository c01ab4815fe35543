"""Benchmark: wall time and peak memory to evaluate each committed stack under Pulumi's mocks.

Each evaluation runs in its own process under `/usr/bin/time -v`, several times; the baseline is an
empty Pulumi program under the same mocks in the same run (interpreter + SDK start-up), so the
figures are reported as ratios to it as well as raw.

    venv/bin/python bench/evaluate_stacks.py [--runs 5] [--stacks dev test live]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

EVALUATE = """
import sys
sys.path.insert(0, {repo!r})
from tests.conftest import MARKERS, build_package, upstream_for
from tests.harness import evaluate
stack = {stack!r}
if stack == "baseline":
    import pulumi
    from tests.harness import _Mocks
    pulumi.runtime.set_mocks(_Mocks({{}}), project="siteline", stack="bench")
else:
    from pathlib import Path
    built = build_package("1.4.0", Path({repo!r}) / "dist")
    release = {{**built, "package": "dist/site-1.4.0.zip"}}
    result = evaluate(stack, secrets=MARKERS if stack != "dev" else None, upstream=upstream_for(stack, release))
    assert result.error is None, result.error
    print("resources", len(result.resources), file=sys.stderr)
"""


def measure(stack: str) -> tuple[float, int, int]:
    """(wall seconds, peak RSS KiB, resources) of one evaluation in a fresh process."""
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", EVALUATE.format(repo=str(REPO), stack=stack)],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{stack} failed:\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    resources = re.search(r"^resources (\d+)$", done.stderr, re.M)
    assert wall and rss, done.stderr
    seconds = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return seconds, int(rss.group(1)), int(resources.group(1)) if resources else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stacks", nargs="+", default=["dev", "test", "live"])
    args = parser.parse_args()

    rows = []
    for stack in ["baseline", *args.stacks]:
        samples = [measure(stack) for _ in range(args.runs)]
        rows.append((stack, statistics.median(s[0] for s in samples), max(s[1] for s in samples), samples[0][2]))
    base_wall, base_rss = rows[0][1], rows[0][2]
    print(f"{'stack':<10}{'resources':>10}{'wall s (median)':>17}{'x baseline':>12}{'peak MiB':>10}{'x baseline':>12}")
    for stack, wall, rss, resources in rows:
        print(f"{stack:<10}{resources:>10}{wall:>17.2f}{wall / base_wall:>12.2f}"
              f"{rss / 1024:>10.0f}{rss / base_rss:>12.2f}")
    print(f"({args.runs} runs each, one fresh process per run, /usr/bin/time -v)")


if __name__ == "__main__":
    main()
