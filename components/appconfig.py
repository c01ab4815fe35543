"""The site's environment variables: settings, secrets, SMTP, database and role, secrets kept secret."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi

from components.release import Release
from components.settings import Settings


def quote(value: str) -> str:
    """Double-quote for both `bash: . file` and systemd's EnvironmentFile, which agree on these escapes."""
    for char in ("\\", '"', "$", "`"):
        value = value.replace(char, "\\" + char)
    return f'"{value}"'


@dataclass(frozen=True)
class AppConfig:
    plain: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secret: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)

    def extended(self, plain: Mapping[str, pulumi.Input[str]] | None = None,
                 secret: Mapping[str, pulumi.Output[str]] | None = None) -> AppConfig:
        """What a target adds once it knows them: the database URL, its own mail sink."""
        return AppConfig({**self.plain, **(plain or {})}, {**self.secret, **(secret or {})})

    def names(self) -> list[str]:
        return sorted({*self.plain, *self.secret})

    def env_file(self) -> pulumi.Output[str]:
        """All variables as one env file, always a secret Output."""
        names = self.names()
        values = [self.secret[n] if n in self.secret else self.plain[n] for n in names]
        rendered = pulumi.Output.all(*values).apply(
            lambda resolved: "".join(f"{n}={quote(str(v))}\n" for n, v in zip(names, resolved, strict=True))
        )
        return pulumi.Output.secret(rendered)


def build(settings: Settings, release: Release) -> AppConfig:
    cfg = settings.config
    smtp = cfg.smtp
    plain: dict[str, pulumi.Input[str]] = dict(cfg.settings)
    plain.update({
        "SITELINE_ROLE": cfg.role,
        "SITELINE_RELEASE": release.version,
        "SMTP_MODE": smtp.mode,
        "SMTP_FROM": smtp.from_address,
        "SMTP_PORT": str(smtp.port),
        "SMTP_ALLOW": ",".join(smtp.allow),
    })
    if smtp.host:
        plain["SMTP_HOST"] = smtp.host
    if smtp.username:
        plain["SMTP_USERNAME"] = smtp.username
    secret: dict[str, pulumi.Output[str]] = {
        name: pulumi.Output.secret(value) for name, value in settings.secrets.values.items()
    }
    if settings.secrets.smtp_password is not None:
        secret["SMTP_PASSWORD"] = pulumi.Output.secret(settings.secrets.smtp_password)
    return AppConfig(plain, secret)
