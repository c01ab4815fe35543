"""The target registry: each module in this package is one place a site can run.

A target module exposes:
- `HOSTING`: the pydantic model of its `siteline:hosting.<name>` block;
- `BUILTIN_MAIL_SINK`: whether `smtp.mode: sink` works without an SMTP host;
- `NEEDS_SSH_KEY`: whether it connects with `siteline:sshPrivateKey`;
- `check(config, hosting)`: the target's own rules, as (key path, problem, fix) triples;
- `REFRESH_SOURCES` (optional): the targets of the stacks it can take a masked database copy from
  (`TargetArgs.refresh`); without it, `database.refreshFrom` is refused for this target;
- `Target`: a ComponentResource taking (name, TargetArgs, opts) and exposing `url`, `database`
  and `smtp` Outputs (the per-target half of the outputs contract).
Adding a target means adding one module here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, Protocol

import pulumi

if TYPE_CHECKING:
    from components.appconfig import AppConfig
    from components.refresh import Refresh
    from components.release import Release
    from components.settings import Settings

Problem = tuple[str, str, str]


@dataclass(frozen=True)
class TargetArgs:
    settings: Settings
    release: Release
    app_config: AppConfig
    # A masked copy of another stack's database to switch to, when database.refreshFrom is set.
    refresh: Optional[Refresh] = None


class SiteTarget(Protocol):
    url: pulumi.Output[str]
    database: pulumi.Output[dict[str, Any]]
    smtp: pulumi.Output[dict[str, Any]]


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    if name not in available():
        raise KeyError(f"no target named {name!r}; available: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{name}")
