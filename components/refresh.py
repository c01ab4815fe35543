"""The database flowing down: which stack a copy comes from, which copy this is, how it is masked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from components import targets
from components.release import PromotionError, upstream_outputs
from components.settings import MaskRule, Settings

# Roles a copy may come from, for each role that takes one: data only ever flows down the chain.
SOURCES = {"test": ("live",), "dev": ("live", "test"), "review": ("live", "test")}


class RefreshError(PromotionError):
    """The source stack cannot be refreshed from. Raised during preview, before anything is declared."""


@dataclass(frozen=True)
class Refresh:
    """A masked copy of the source stack's database, taken once per refresh id."""

    refresh_id: str
    source_stack: str
    source_role: str
    source_target: str
    source: dict[str, Any]  # the source's `database` output: engine, host, port, name, id (+ target extras)
    mask: tuple[MaskRule, ...]
    database_name: str  # the copy's database name on this stack's server


def database_name(base: str, refresh_id: str) -> str:
    """`site` + refresh id `2026-11-26` -> `site_r2026_11_26`: a new name per copy, beside the current one."""
    suffix = re.sub(r"[^a-z0-9_]", "_", refresh_id.lower())
    return f"{base}_r{suffix}"[:63]


def current_database(settings: Settings) -> str:
    """The database the site uses now: the latest copy when refreshes are configured."""
    db = settings.config.database
    return database_name(db.name, db.refresh_id) if db.refresh_from and db.refresh_id else db.name


def resolve(settings: Settings) -> Optional[Refresh]:
    db = settings.config.database
    if not db.refresh_from or not db.refresh_id:
        return None
    outputs = upstream_outputs(db.refresh_from, key="database.refreshFrom")
    role, target, source = outputs.get("role"), outputs.get("target"), outputs.get("database")
    allowed = SOURCES.get(settings.role, ())
    if role not in allowed:
        raise RefreshError(
            f"siteline:database.refreshFrom: {db.refresh_from} has the role {role!r}; a {settings.role} stack "
            f"takes its copy from {' or '.join(allowed) or 'nowhere'}. Fix: point refreshFrom at the live stack.")
    takes_from = getattr(targets.load(settings.target), "REFRESH_SOURCES", ())
    if target not in takes_from:
        raise RefreshError(
            f"siteline:database.refreshFrom: {db.refresh_from} runs on the {target} target, and the "
            f"{settings.target} target can take a database copy only from "
            f"{', '.join(takes_from) or 'no target yet'}. Fix: remove database.refreshFrom, or refresh from a "
            "stack on a target listed here.")
    if target == "vps" and settings.secrets.ssh_private_key is None:
        raise RefreshError(
            f"siteline:sshPrivateKey: copying from {db.refresh_from} dumps its database over SSH, and this stack "
            "has no key. Fix: pulumi config set --secret siteline:sshPrivateKey < <key authorized on that server>")
    if not isinstance(source, dict) or not source.get("id") or not target:
        raise RefreshError(
            f"siteline:database.refreshFrom: {db.refresh_from} exports no database id to copy from. Fix: run "
            f"pulumi up on {db.refresh_from} with this version of Siteline first.")
    return Refresh(refresh_id=db.refresh_id, source_stack=db.refresh_from, source_role=str(role),
                   source_target=str(target), source=dict(source), mask=db.mask,
                   database_name=database_name(db.name, db.refresh_id))
