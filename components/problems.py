"""Config problems: collect every one, then fail once with each key path, what is wrong and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pydantic import ValidationError


class ConfigError(pulumi.RunError):
    """Raised before any resource is registered. RunError prints without a Python traceback."""


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str
    fix: str

    def render(self) -> str:
        return f"  - siteline:{self.path}: {self.problem}.\n    Fix: {self.fix}"


@dataclass
class Report:
    stack: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: str, problem: str, fix: str) -> None:
        entry = Problem(path, problem, fix)
        if entry not in self.problems:
            self.problems.append(entry)

    def extend(self, entries: list[Problem]) -> None:
        for entry in entries:
            self.add(entry.path, entry.problem, entry.fix)

    def raise_if_any(self) -> None:
        if self.problems:
            raise self.error()

    def error(self) -> ConfigError:
        count = len(self.problems)
        lines = [f"Siteline config for stack '{self.stack}' has {count} problem{'s' if count > 1 else ''}:"]
        lines += [entry.render() for entry in self.problems]
        lines.append("Nothing was created or changed. Add -s <stack> to each pulumi config command if needed.")
        return ConfigError("\n".join(lines))


def fix_set(path: str, example: str) -> str:
    return f"pulumi config set --path 'siteline:{path}' {example}"


def fix_secret(path: str) -> str:
    return f"pulumi config set --secret --path 'siteline:{path}' <value>"


def _join(prefix: str, loc: tuple[object, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _describe(error: dict[str, object], echo_values: bool) -> str:
    kind = str(error["type"])
    message = str(error["msg"])
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "is not a known key here"
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch" and isinstance(ctx, dict):
        message = f"has the wrong format (expected to match {ctx.get('pattern')})"
    if echo_values and kind not in ("missing",) and not isinstance(error.get("input"), (dict, list)):
        message += f" (got {error.get('input')!r})"
    return message[0].lower() + message[1:]


# Example values for fixes, by key path with list indices removed.
EXAMPLES = {
    "role": "live", "target": "azure", "promoteFrom": "acme/siteline/test", "requireVerified": "true",
    "release.version": "1.4.0", "release.package": "dist/site-1.4.0.zip",
    "release.sha256": "<sha256 the build printed>",
    "verified.version": "1.4.0", "verified.sha256": "<sha256 of that release>",
    "site.port": "8000", "site.healthPath": "/healthz", "site.runtime": "python:3.11",
    "site.start": "'gunicorn --bind 127.0.0.1:${PORT} app:application'", "site.migrate": "'python3 migrate.py'",
    "hosting.instances": "2", "hosting.size": "P1v3", "hosting.domain": "www.example.com",
    "database.version": "16", "database.storageGb": "64", "database.backupRetentionDays": "35",
    "database.highAvailability": "true", "database.name": "site", "database.refreshFrom": "acme/siteline/live",
    "database.mask.table": "people", "database.mask.column": "email", "database.mask.strategy": "email",
    "smtp.host": "smtp.example.com", "smtp.port": "587", "smtp.from": "hello@example.com",
    "smtp.mode": "sink", "smtp.allowRealMail": "true", "smtp.allow": "example.com",
}


def _fix(path: str, kind: str) -> str:
    if kind == "extra_forbidden":
        return f"remove it with pulumi config rm --path 'siteline:{path}', or check its spelling"
    bare = ".".join(part.split("[")[0] for part in path.split("."))
    return fix_set(path, EXAMPLES.get(bare, "<value>")) + " (the config reference is in README.md)"


def from_validation(err: ValidationError, prefix: str, echo_values: bool) -> list[Problem]:
    """Turn pydantic's errors into Problems. Input values are shown only for keys that hold no secrets."""
    found = []
    for error in err.errors(include_url=False):
        path = _join(prefix, tuple(error["loc"]))
        found.append(Problem(path, _describe(dict(error), echo_values), _fix(path, str(error["type"]))))
    return found
