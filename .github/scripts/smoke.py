"""UI smoke test of a deployed site: health reports the expected release, pages render, the contact form is served."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Optional


def fetch(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"User-Agent": "siteline-smoke"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8", "replace")


def wait_healthy(base: str, health_path: str, version: Optional[str], deadline: float) -> Optional[str]:
    """Poll until health answers ok with the version (a swap or a restart may still be settling)."""
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _, body = fetch(base + health_path)
            health = json.loads(body) if status == 200 else {}
            if health.get("status") == "ok" and (version is None or health.get("release") == version):
                return None
            problem = f"{health_path} answered {status}: {body[:200]}"
        except (OSError, ValueError) as error:
            problem = f"{health_path}: {error}"
        time.sleep(3)
    return problem


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the site's base URL (the stack output `url`)")
    parser.add_argument("--version", help="the release the site must report at its health endpoint")
    parser.add_argument("--health-path", default="/healthz")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for the site to become healthy")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")

    failures: list[str] = []
    problem = wait_healthy(base, args.health_path, args.version, time.monotonic() + args.wait)
    if problem:
        failures.append(f"health: {problem}")
    for path, expected in (("/", "<h2>"), ("/contact", "<form")):
        try:
            status, headers, body = fetch(base + path)
        except OSError as error:
            failures.append(f"GET {path}: {error}")
            continue
        if status != 200 or expected not in body:
            failures.append(f"GET {path}: status {status}, {expected!r} {'found' if expected in body else 'missing'}")
        elif "text/html" not in headers.get("Content-Type", ""):
            failures.append(f"GET {path}: Content-Type {headers.get('Content-Type')}")
    try:
        status, _, _ = fetch(base + "/no-such-page-siteline-smoke")
        if status != 404:
            failures.append(f"GET an unknown page: status {status}, expected 404")
    except OSError as error:
        failures.append(f"GET an unknown page: {error}")

    for failure in failures:
        print(f"FAIL {failure}")
    print(f"smoke {base}: {'failed' if failures else 'passed'} ({len(failures)} problem(s))")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
