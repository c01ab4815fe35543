"""The release: one immutable package (version, package, sha256), built once and promoted unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pulumi
from pydantic import ValidationError

from components.settings import ReleaseSpec, Settings


class PromotionError(pulumi.RunError):
    """The upstream stack has nothing this stack may take. Raised during preview."""


@dataclass(frozen=True)
class Release:
    version: pulumi.Output[str]
    package: pulumi.Output[str]
    sha256: pulumi.Output[str]

    @staticmethod
    def known(version: str, package: str, sha256: str) -> Release:
        return Release(pulumi.Output.from_input(version), pulumi.Output.from_input(package),
                       pulumi.Output.from_input(sha256))

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


def package_asset(project_dir: Path, package: str, sha256: str) -> pulumi.Asset:
    """The package as an asset to upload; a local file must still hash to the release's sha256,
    on promoted stacks too. An https package is fetched by the engine, and verified where it lands."""
    if package.startswith("https://"):
        return pulumi.RemoteAsset(package)
    path = (project_dir / package).resolve()
    if not path.is_file():
        raise pulumi.RunError(f"release package {package} is not on this machine ({path}). Fix: download the "
                              "release artifact into the project directory, or publish the package at an https URL.")
    actual = file_sha256(path)
    if actual != sha256:
        raise pulumi.RunError(f"release package {package} hashes to {actual}, not the release's {sha256}. "
                              "Fix: fetch the exact package the release names; packages are never rebuilt.")
    return pulumi.FileAsset(str(path))


def _same(a: Optional[dict[str, Any]], b: Optional[dict[str, Any]]) -> bool:
    return bool(a and b and a.get("version") == b.get("version") and a.get("sha256") == b.get("sha256"))


def _complete(upstream: str, name: str, release: Any) -> dict[str, str]:
    """An upstream release as this stack will deploy it, checked like siteline:release is."""
    if not isinstance(release, dict) or not all(release.get(k) for k in ("version", "package", "sha256")):
        raise PromotionError(
            f"siteline:promoteFrom: the upstream stack {upstream} has no {name} output with version, package "
            f"and sha256. Fix: run pulumi up on {upstream} first, then preview this stack again."
        )
    try:
        spec = ReleaseSpec.model_validate({k: release[k] for k in ("version", "package", "sha256")})
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors())
        raise PromotionError(
            f"siteline:promoteFrom: the {name} output of {upstream} is malformed ({fields}). Fix: redeploy "
            f"{upstream} with a release built by examples/site/package.py."
        ) from None
    return {"version": spec.version, "package": spec.package, "sha256": str(spec.sha256)}


def gate(upstream: str, deployed: Any, verified: Any) -> dict[str, str]:
    """Live takes only what test verified, and only while test still runs exactly that release."""
    if not verified:
        raise PromotionError(
            f"siteline:requireVerified: the upstream stack {upstream} has no verifiedRelease, so nothing "
            f"may be promoted. Fix: run the test suite against {upstream} and record "
            f"siteline:verified there (the delivery workflow does this), then preview again."
        )
    checked = _complete(upstream, "verifiedRelease", verified)
    if not _same(checked, deployed):
        raise PromotionError(
            f"siteline:requireVerified: the upstream stack {upstream} verified {checked['version']} "
            f"but now runs {(deployed or {}).get('version')}. Fix: finish testing the release it runs, "
            f"or redeploy the verified one there, then preview again."
        )
    return checked


def upstream_outputs(stack_name: str, key: str = "promoteFrom") -> dict[str, Any]:
    """Another stack's outputs, read synchronously.

    This is the engine's built-in invoke behind StackReference. Reading it before the Environment is
    declared means a refused promotion (or refresh) stops the preview before any resource is registered.
    """
    result = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": stack_name})
    if result.value is None:
        raise PromotionError(f"siteline:{key}: cannot read the outputs of {stack_name}. Fix: check the "
                             "stack name (<org>/siteline/<stack>) and that you may read it.")
    return dict(result.value.get("outputs") or {})


def resolve(settings: Settings) -> Release:
    """The release this stack deploys: its own (first stack) or its upstream's, gated."""
    cfg = settings.config
    if cfg.release is not None:
        package = cfg.release.package
        # settings checked that a local file exists and matches; the first stack hashes what it built.
        sha256 = cfg.release.sha256 or file_sha256(settings.project_dir / package)
        return Release.known(cfg.release.version, package, sha256)

    upstream = str(cfg.promote_from)
    outputs = upstream_outputs(upstream)
    deployed = _complete(upstream, "release", outputs.get("release"))
    chosen = gate(upstream, deployed, outputs.get("verifiedRelease")) if cfg.require_verified else deployed
    return Release.known(chosen["version"], chosen["package"], chosen["sha256"])


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
