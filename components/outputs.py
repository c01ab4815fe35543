"""The stack outputs contract (v1) and a typed reader for the teams that consume it.

Reading another team's Siteline stack from your own Pulumi program:

    from components.outputs import SitelineStack

    live = SitelineStack("acme/siteline/live")
    pulumi.export("siteUrl", live.url)
    live.outputs.apply(lambda site: print(site.release.version, site.database.host))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import jsonschema
import pulumi

CONTRACT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "stack-outputs.v1.schema.json"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate(values: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError when `values` break the v1 contract."""
    jsonschema.validate(dict(values), schema())


@dataclass(frozen=True)
class ReleaseRef:
    version: str
    package: str
    sha256: str


@dataclass(frozen=True)
class DatabaseRef:
    engine: str
    host: str
    port: int
    name: str
    id: str


@dataclass(frozen=True)
class SiteOutputs:
    role: str
    target: str
    url: str
    release: ReleaseRef
    verified_release: Optional[ReleaseRef]
    database: DatabaseRef
    smtp_host: str
    smtp_port: int
    smtp_mode: str
    contract: int

    @staticmethod
    def parse(values: Mapping[str, Any]) -> SiteOutputs:
        validate(values)
        verified = values.get("verifiedRelease")
        database = values["database"]
        return SiteOutputs(
            role=values["role"], target=values["target"], url=values["url"],
            release=ReleaseRef(**values["release"]),
            verified_release=ReleaseRef(**verified) if verified else None,
            database=DatabaseRef(engine=database["engine"], host=database["host"], port=int(database["port"]),
                                 name=database["name"], id=database["id"]),
            smtp_host=values["smtp"]["host"], smtp_port=int(values["smtp"]["port"]), smtp_mode=values["smtp"]["mode"],
            contract=int(values["contract"]),
        )


class SitelineStack:
    """A typed view of another Siteline stack, built on pulumi.StackReference."""

    def __init__(self, stack_name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        self.reference = pulumi.StackReference(f"siteline-{stack_name.replace('/', '-')}",
                                               stack_name=stack_name, opts=opts)
        keys = ("role", "target", "url", "release", "verifiedRelease", "database", "smtp", "contract")
        self.outputs: pulumi.Output[SiteOutputs] = pulumi.Output.all(
            *[self.reference.get_output(k) for k in keys]
        ).apply(lambda v: SiteOutputs.parse({k: x for k, x in zip(keys, v, strict=True) if x is not None}))

    @property
    def url(self) -> pulumi.Output[str]:
        return self.outputs.apply(lambda site: site.url)

    @property
    def release(self) -> pulumi.Output[ReleaseRef]:
        return self.outputs.apply(lambda site: site.release)

    @property
    def database(self) -> pulumi.Output[DatabaseRef]:
        return self.outputs.apply(lambda site: site.database)


def smtp(host: str, port: int, mode: str) -> dict[str, Any]:
    """The `smtp` output: where the site's mail goes (a relay, or the target's own sink) and how."""
    return {"host": host, "port": port, "mode": mode}


def contract(role: str, target: str, url: pulumi.Input[str], release: pulumi.Input[dict[str, str]],
             database: pulumi.Input[dict[str, Any]], smtp: pulumi.Input[dict[str, Any]],
             verified: Optional[pulumi.Input[Optional[dict[str, str]]]]) -> dict[str, Any]:
    """The v1 outputs of one stack, ready for pulumi.export."""
    values: dict[str, Any] = {
        "role": role, "target": target, "url": url, "release": release,
        "database": database, "smtp": smtp, "contract": CONTRACT_VERSION,
    }
    if verified is not None:
        values["verifiedRelease"] = verified
    return values
