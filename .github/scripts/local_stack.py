"""Prepare a stack on the `local` target for this GitHub runner, before its `pulumi up`.

Usage: python3 .github/scripts/local_stack.py <org>/siteline/dev   (deliver.yml's dev job; review-stack.yml's pr-<n>)

The local target runs the site on the machine that runs pulumi, so in CI the stack lives for one
job. Two things from the committed config and the backend do not fit a fresh runner:
- database.version: the stack files name "15"; the runner has its own PostgreSQL (16 on ubuntu-24.04).
- the state: the previous job's processes and files went with its runner. When the backend still
  holds resources, `pulumi destroy` clears them; the local scripts' down/remove are no-ops for what
  is already gone, and any other failure fails the job.
A stack on another target is left alone: its resources are real and long-lived.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

POSTGRES_ROOT = Path("/usr/lib/postgresql")

Run = Callable[[list[str]], str]


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        problem = result.stderr.strip() or result.stdout.strip()
        raise SystemExit(f"local_stack: {' '.join(command[:3])} failed: {problem}")
    return result.stdout


def stream(command: list[str]) -> None:
    """A command whose progress belongs in the job log (destroy)."""
    subprocess.run(command, check=True)


def target_of(stack: str, runner: Run) -> str:
    # A failed read fails the job (run() exits): guessing "local" could destroy a cloud stack.
    config = json.loads(runner(["pulumi", "config", "--json", "--stack", stack]) or "{}")
    return str((config.get("siteline:target") or {}).get("value") or "local")  # Pulumi.yaml's default


def runner_postgres(root: Path = POSTGRES_ROOT) -> str:
    """The newest PostgreSQL major installed on this machine with a server (initdb)."""
    majors = [p.name for p in root.glob("*") if p.name.isdigit() and (p / "bin" / "initdb").exists()] \
        if root.is_dir() else []
    if not majors:
        raise SystemExit(f"local_stack: no PostgreSQL server under {root}. Fix: install postgresql on the runner.")
    return max(majors, key=int)


def resource_count(stack: str, runner: Run) -> int:
    state = json.loads(runner(["pulumi", "stack", "export", "--stack", stack]) or "{}")
    return len((state.get("deployment") or {}).get("resources") or [])


def prepare(stack: str, runner: Run = run, destroy: Callable[[list[str]], None] = stream,
            postgres_root: Path = POSTGRES_ROOT) -> list[str]:
    """What was done, one line each."""
    target = target_of(stack, runner)
    if target != "local":
        return [f"{stack} is on target {target}: nothing to prepare"]
    version = runner_postgres(postgres_root)
    runner(["pulumi", "config", "set", "--path", "siteline:database.version", version, "--stack", stack])
    done = [f"{stack}: database.version {version} (this runner's PostgreSQL)"]
    count = resource_count(stack, runner)
    if count:
        destroy(["pulumi", "destroy", "--yes", "--non-interactive", "--skip-preview", "--stack", stack])
        done.append(f"{stack}: destroyed the previous runner's {count} resource(s) in the backend")
    else:
        done.append(f"{stack}: no resources in the backend, nothing to clear")
    return done


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: local_stack.py <org>/siteline/<stack>")
    for line in prepare(args[0]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
