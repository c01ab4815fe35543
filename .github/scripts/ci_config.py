"""Put back the config CI sets at delivery (never committed) from the stack's own outputs, before a drift check.

Delivery sets siteline:release on the first stack and siteline:verified on test in the job's working
copy only; the backend keeps them as the `release` and `verifiedRelease` outputs. Without them a
drift preview would report the release itself as drift.
"""

from __future__ import annotations

import json
import subprocess
import sys


def pulumi(*args: str) -> str:
    return subprocess.run(["pulumi", *args], check=True, capture_output=True, text=True).stdout


def main() -> int:
    outputs = json.loads(pulumi("stack", "output", "--json") or "{}")
    promoted = pulumi("config", "get", "siteline:promoteFrom").strip() if _has("siteline:promoteFrom") else ""
    release = outputs.get("release") or {}
    if not promoted and release:
        for key in ("version", "package", "sha256"):
            pulumi("config", "set", "--path", f"siteline:release.{key}", str(release[key]))
        print(f"siteline:release = {release['version']} (from the stack's release output)")
    verified = outputs.get("verifiedRelease") or {}
    if verified:
        for key in ("version", "sha256"):
            pulumi("config", "set", "--path", f"siteline:verified.{key}", str(verified[key]))
        print(f"siteline:verified = {verified['version']} (from the stack's verifiedRelease output)")
    return 0


def _has(key: str) -> bool:
    return subprocess.run(["pulumi", "config", "get", key], capture_output=True).returncode == 0


if __name__ == "__main__":
    sys.exit(main())
