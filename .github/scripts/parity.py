"""Environment parity report: every difference between stacks' effective config, allowed or flagged.

Usage: python .github/scripts/parity.py test live [--strict] [--set live:site.runtime=python:3.12]

Each stack's effective config is what the program would read: Pulumi.yaml defaults, then the role's
defaults (components.settings.ROLE_DEFAULTS), then Pulumi.<stack>.yaml, then the model defaults. The
release is left out: promotion makes it the same package on every stack by construction.
Differences an environment is meant to have (role, keys and connector settings, SMTP, sizes,
hosting, backups) are listed as allowed. Anything else is flagged: another runtime or start
command, another database version, a setting or a secret that one stack lacks. Secret values are
never read: a secret shows as "set".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.settings import ROLE_DEFAULTS, StackConfig, infer_role  # noqa: E402 - after the path

NAMESPACE = "siteline"
MISSING = "—"
# Why a difference is allowed, by key prefix (first match wins).
ALLOWED = [
    ("role", "role"), ("promoteFrom", "promotion chain"), ("requireVerified", "promotion gate"),
    ("verified", "promotion gate"), ("hosting", "sizes and hosting"), ("smtp", "SMTP"),
    ("database.size", "sizes"), ("database.storageGb", "sizes"), ("database.backupRetentionDays", "backups"),
    ("database.highAvailability", "sizes"), ("database.refreshFrom", "database refresh"),
    ("database.refreshId", "database refresh"), ("database.mask", "database refresh"),
    ("database.retainOnDestroy", "protection"), ("site.port", "hosting"),
]
FLAGGED = [
    ("target", "another platform"), ("site.runtime", "another runtime"), ("site.start", "another start command"),
    ("site.migrate", "another migrate command"), ("site.healthPath", "another health check"),
    ("site.requiredSecrets", "another set of required secrets"), ("database.version", "another database version"),
    ("database.engine", "another database engine"), ("database.name", "another database name"),
]
LEFT_OUT = ("release",)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(
            merged.get(key), dict) else value
    return merged


def _strip_secure(value: Any) -> Any:
    """A `secure:` leaf becomes the word "set": its name matters for parity, its value never."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return "set"
    if isinstance(value, dict):
        return {k: _strip_secure(v) for k, v in value.items()}
    return value


def _set_path(values: dict[str, Any], path: str, value: Any) -> None:
    node = values
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def effective(stack: str, overrides: dict[str, Any], project_dir: Path = REPO) -> dict[str, Any]:
    """The stack's `siteline:*` config with every default applied, secrets as "set"."""
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    values: dict[str, Any] = {k: spec["default"] for k, spec in (project.get("config") or {}).items()
                              if isinstance(spec, dict) and "default" in spec}
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    committed = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else {}
    for key, value in ((committed or {}).get("config") or {}).items():
        if key.startswith(f"{NAMESPACE}:"):
            values[key.split(":", 1)[1]] = _strip_secure(value)
    for path, value in overrides.items():
        _set_path(values, path, value)
    role = values.get("role") or infer_role(stack) or "dev"
    merged = _deep_merge(ROLE_DEFAULTS[role], {**values, "role": role})
    secrets = merged.pop("secrets", {}) or {}
    ssh_key = merged.pop("sshPrivateKey", None)
    smtp_password = (merged.get("smtp") or {}).pop("password", None) if isinstance(merged.get("smtp"), dict) else None
    try:
        model = StackConfig.model_validate(merged)
        full: dict[str, Any] = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
        full["hosting"] = _deep_merge(full.get("hosting", {}), merged.get("hosting", {}) or {})
    except ValueError:
        full = merged  # an invalid stack still gets a report; `pulumi preview` explains what is wrong
    full["secrets"] = {name: "set" for name in secrets}
    if smtp_password is not None:
        full.setdefault("smtp", {})["password"] = "set"
    if ssh_key is not None:
        full["sshPrivateKey"] = "set"
    for key in LEFT_OUT:
        full.pop(key, None)
    return full


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values; an empty object has no leaves, so its keys show as missing."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def verdict(key: str, present: list[bool]) -> tuple[bool, str]:
    """(flagged, why) for one differing key."""
    top = key.split(".")[0]
    if top in ("settings", "secrets"):
        if not all(present):
            return True, f"a {'secret' if top == 'secrets' else 'setting'} missing on some stacks"
        return False, "keys and connector settings" if top == "settings" else "secret values"
    for prefix, why in FLAGGED:
        if key == prefix or key.startswith(prefix + "."):
            return True, why
    for prefix, why in ALLOWED:
        if key == prefix or key.startswith(prefix + "."):
            return False, why
    return True, "not an environment difference Siteline expects"


def show(value: Any) -> str:
    if value is MISSING:
        return MISSING
    text = json.dumps(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|")


def report(stacks: list[str], overrides: dict[str, dict[str, Any]],
           project_dir: Path = REPO) -> tuple[str, list[tuple[str, str]]]:
    """(Markdown table, flagged (key, why) pairs)."""
    flat = {stack: flatten(effective(stack, overrides.get(stack, {}), project_dir)) for stack in stacks}
    keys = sorted({key for values in flat.values() for key in values})
    header = f"| key | {' | '.join(stacks)} | verdict |\n|---|{'---|' * len(stacks)}---|"
    rows, flagged = [], []
    for key in keys:
        values = [flat[stack].get(key, MISSING) for stack in stacks]
        if all(v == values[0] for v in values):
            continue
        bad, why = verdict(key, [v is not MISSING for v in values])
        if bad:
            flagged.append((key, why))
        mark = f"**flagged**: {why}" if bad else f"allowed ({why})"
        rows.append(f"| `{key}` | {' | '.join(show(v) for v in values)} | {mark} |")
    title = f"### Environment parity: {' / '.join(stacks)}\n\n"
    if not rows:
        return title + "No differences.\n", []
    summary = f"\n\n{len(rows)} difference(s), {len(flagged)} flagged.\n"
    return title + header + "\n" + "\n".join(rows) + summary, flagged


def _parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        stack, _, assignment = item.partition(":")
        path, _, raw = assignment.partition("=")
        if not stack or not path or not _:
            raise SystemExit(f"--set {item!r}: expected STACK:KEY.PATH=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides.setdefault(stack, {})[path] = value
    return overrides


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", nargs="+", help="two or more stack names (Pulumi.<stack>.yaml)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a difference is flagged")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STACK:KEY=VALUE",
                        help="change one key of one stack before comparing (what-if, and the tests)")
    args = parser.parse_args(argv)
    if len(args.stacks) < 2:
        parser.error("name at least two stacks")
    text, flagged = report(args.stacks, _parse_set(args.overrides))
    print(text)
    return 1 if args.strict and flagged else 0


if __name__ == "__main__":
    sys.exit(main())
