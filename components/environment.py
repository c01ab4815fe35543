"""Environment: one stack's site. Resolves the release, builds the app config, runs the chosen target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components import appconfig, outputs, refresh, release, targets
from components.settings import Settings


@dataclass(frozen=True)
class EnvironmentArgs:
    settings: Settings


class Environment(pulumi.ComponentResource):
    outputs: dict[str, Any]

    def __init__(self, name: str, args: EnvironmentArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        settings = args.settings
        cfg = settings.config
        # Resolved before anything is declared: a refused promotion or refresh registers nothing.
        self.release = release.resolve(settings)
        copy = refresh.resolve(settings)
        # The guardrail facts, as component inputs: the policy pack reads them from here.
        super().__init__("siteline:index:Environment", name, {
            "role": cfg.role, "target": cfg.target, "smtpMode": cfg.smtp.mode,
            "allowRealMail": cfg.smtp.allow_real_mail, "requireVerified": cfg.require_verified,
            "promoteFrom": cfg.promote_from or "",
        }, opts)
        child = pulumi.ResourceOptions(parent=self)

        app_config = appconfig.build(settings, self.release)
        target_module = targets.load(settings.target)
        site: targets.SiteTarget = target_module.Target(
            f"{name}-{settings.target}", targets.TargetArgs(settings, self.release, app_config, copy), child
        )

        self.outputs = outputs.contract(
            role=settings.role,
            target=settings.target,
            url=site.url,
            release=self.release.as_dict(),
            database=site.database,
            smtp=site.smtp,
            verified=release.verified_release(settings, self.release),
        )
        self.register_outputs(self.outputs)
