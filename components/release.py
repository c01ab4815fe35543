"""The release: one immutable package (version, package, sha256), built once and promoted unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi

from components.settings import Settings


class PromotionError(pulumi.RunError):
    """The upstream stack has nothing this stack may take. Raised during preview."""


@dataclass(frozen=True)
class Release:
    version: pulumi.Output[str]
    package: pulumi.Output[str]
    sha256: pulumi.Output[str]

    @staticmethod
    def from_output(release: pulumi.Output[dict[str, Any]]) -> Release:
        return Release(
            version=release.apply(lambda r: str(r["version"])),
            package=release.apply(lambda r: str(r["package"])),
            sha256=release.apply(lambda r: str(r["sha256"])),
        )

    def as_dict(self) -> pulumi.Output[dict[str, str]]:
        return pulumi.Output.all(self.version, self.package, self.sha256).apply(
            lambda v: {"version": v[0], "package": v[1], "sha256": v[2]}
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as package:
        for chunk in iter(lambda: package.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _same(a: Optional[dict[str, Any]], b: Optional[dict[str, Any]]) -> bool:
    return bool(a and b and a.get("version") == b.get("version") and a.get("sha256") == b.get("sha256"))


def _complete(upstream: str, name: str, release: Any) -> dict[str, Any]:
    if not isinstance(release, dict) or not all(release.get(k) for k in ("version", "package", "sha256")):
        raise PromotionError(
            f"siteline:promoteFrom: the upstream stack {upstream} has no {name} output with version, package "
            f"and sha256. Fix: run pulumi up on {upstream} first, then preview this stack again."
        )
    return release


def gate(upstream: str, deployed: Any, verified: Any) -> dict[str, Any]:
    """Live takes only what test verified, and only while test still runs exactly that release."""
    if not verified:
        raise PromotionError(
            f"siteline:requireVerified: the upstream stack {upstream} has no verifiedRelease, so nothing "
            f"may be promoted. Fix: run the test suite against {upstream} and record "
            f"siteline:verified there (the delivery workflow does this), then preview again."
        )
    verified = _complete(upstream, "verifiedRelease", verified)
    if not _same(verified, deployed):
        raise PromotionError(
            f"siteline:requireVerified: the upstream stack {upstream} verified {verified.get('version')} "
            f"but now runs {(deployed or {}).get('version')}. Fix: finish testing the release it runs, "
            f"or redeploy the verified one there, then preview again."
        )
    return verified


def resolve(settings: Settings, opts: pulumi.ResourceOptions) -> Release:
    """The release this stack deploys: its own (first stack) or its upstream's."""
    cfg = settings.config
    if cfg.release is not None:
        package = cfg.release.package
        sha256 = cfg.release.sha256
        if sha256 is None:
            # settings validated that the file exists; the first stack hashes what it built.
            sha256 = file_sha256(settings.project_dir / package)
        return Release(pulumi.Output.from_input(cfg.release.version),
                       pulumi.Output.from_input(package), pulumi.Output.from_input(sha256))

    upstream = str(cfg.promote_from)
    reference = pulumi.StackReference("promote-from", stack_name=upstream, opts=opts)
    deployed = reference.get_output("release")
    if not cfg.require_verified:
        return Release.from_output(deployed.apply(lambda r: _complete(upstream, "release", r)))
    verified = reference.get_output("verifiedRelease")
    return Release.from_output(pulumi.Output.all(deployed, verified).apply(lambda dv: gate(upstream, dv[0], dv[1])))


def verified_release(settings: Settings, release: Release) -> Optional[pulumi.Output[Optional[dict[str, str]]]]:
    """Test's `verifiedRelease` output: the deployed release, only when siteline:verified names it."""
    if settings.role != "test":
        return None
    claimed = settings.config.verified
    if claimed is None:
        return pulumi.Output.from_input(None)
    expected = {"version": claimed.version, "sha256": claimed.sha256}

    def check(deployed: dict[str, str]) -> Optional[dict[str, str]]:
        if _same(deployed, expected):
            return deployed
        pulumi.log.warn(
            f"siteline:verified names {claimed.version} but this stack runs {deployed['version']}: "
            "verifiedRelease stays empty until the test suite passes on the running release."
        )
        return None

    return release.as_dict().apply(check)
