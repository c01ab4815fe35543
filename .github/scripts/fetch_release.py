"""Put the package a promoted stack deploys on disk, before a preview or an update of that stack.

Usage: python3 .github/scripts/fetch_release.py --stack <org>/siteline/test

A promoted stack (siteline:promoteFrom) deploys its upstream's `release` output. The azure and aws
targets hash and upload that package file during preview too, so it must be in the checkout at the
release's `package` path. deliver.yml keeps each build as the artifact `release-<version>`; this
script finds the newest unexpired one through the REST API (GITHUB_TOKEN with `actions: read`, in
GH_TOKEN), downloads it with `gh run download` and checks the file against the release's sha256.
A stack that is not promoted, or a package at an https URL, needs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

Run = Callable[[list[str]], str]


class FetchError(Exception):
    pass


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"{' '.join(command[:3])} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def artifact_name(version: str) -> str:
    """The name deliver.yml's build job uploads the package under."""
    return f"release-{version}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as package:
        for chunk in iter(lambda: package.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upstream_release(stack: str, runner: Run) -> Optional[tuple[str, dict[str, Any]]]:
    """(upstream stack, its release output), or None when the stack is not promoted."""
    config = json.loads(runner(["pulumi", "config", "--json", "--stack", stack]) or "{}")
    upstream = (config.get("siteline:promoteFrom") or {}).get("value")
    if not upstream:
        return None
    release = json.loads(runner(["pulumi", "stack", "output", "release", "--json", "--stack", upstream]) or "null")
    if not isinstance(release, dict) or not all(release.get(k) for k in ("version", "package", "sha256")):
        raise FetchError(f"{upstream} has no release output with version, package and sha256: deploy it first "
                         f"(deliver.yml), then run this job again.")
    return upstream, release


def newest_artifact(repo: str, name: str, runner: Run) -> dict[str, Any]:
    listing = json.loads(runner(["gh", "api", f"repos/{repo}/actions/artifacts?name={quote(name)}&per_page=100"]))
    live = [a for a in listing.get("artifacts", []) if a.get("name") == name and not a.get("expired")]
    if not live:
        raise FetchError(
            f"no unexpired artifact {name!r} in {repo}. The delivery run that built this release uploaded it, "
            "so its retention (90 days) has most likely run out. Fix: deploy a new release through deliver.yml, "
            "or publish the package at an https URL.")
    return max(live, key=lambda a: a.get("created_at", ""))


def fetch(stack: str, project_dir: Path, repo: str, runner: Run = run) -> str:
    """Make sure the promoted package is at its path in project_dir; returns what was done."""
    found = upstream_release(stack, runner)
    if found is None:
        return f"{stack} is not promoted: its package comes from its own siteline:release"
    upstream, release = found
    package, sha256, version = str(release["package"]), str(release["sha256"]), str(release["version"])
    if package.startswith("https://"):
        return f"{upstream} released {version} at {package}: the engine fetches it"
    root = project_dir.resolve()
    dest = (root / package).resolve()
    if not dest.is_relative_to(root):
        raise FetchError(f"the release package path {package!r} of {upstream} leaves the project directory")
    if dest.is_file() and sha256_of(dest) == sha256:
        return f"{package} is already here and matches {upstream}'s release {version}"

    name = artifact_name(version)
    artifact = newest_artifact(repo, name, runner)
    run_id = str((artifact.get("workflow_run") or {}).get("id") or "")
    if not run_id:
        raise FetchError(f"artifact {name!r} (id {artifact.get('id')}) names no workflow run to download it from")
    with tempfile.TemporaryDirectory() as scratch:
        runner(["gh", "run", "download", run_id, "--repo", repo, "--name", name, "--dir", scratch])
        candidates = [p for p in Path(scratch).rglob(Path(package).name) if p.is_file()]
        if not candidates:
            raise FetchError(f"artifact {name!r} of run {run_id} holds no {Path(package).name}")
        got = sha256_of(candidates[0])
        if got != sha256:
            raise FetchError(f"artifact {name!r} of run {run_id} hashes to {got}, not the release's {sha256}. "
                             "Packages are never rebuilt: find out who replaced it before deploying anything.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidates[0], dest)
    if sha256_of(dest) != sha256:
        raise FetchError(f"{package} does not hash to {sha256} after the copy")
    return f"{package}: {upstream}'s release {version} from artifact {name!r} of run {run_id}, sha256 verified"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="the stack about to be previewed or updated")
    parser.add_argument("--repo", default=os.environ.get("GITHUB_REPOSITORY", ""), help="owner/name")
    args = parser.parse_args(argv)
    if not args.repo:
        parser.error("--repo (or GITHUB_REPOSITORY) is required")
    try:
        print(fetch(args.stack, Path.cwd(), args.repo))
    except FetchError as error:
        print(f"::error::fetch_release: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
