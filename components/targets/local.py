"""Target `local`: the site on this machine as the current user, everything under .siteline/<stack>/."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_random as random
from pulumi_command import local as command
from pydantic import BaseModel, ConfigDict, Field

from components import mask, outputs
from components.refresh import RefreshError, current_database
from components.targets import Problem, TargetArgs
from components.targets.vps import refresh_source

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
BUILTIN_MAIL_SINK = True
NEEDS_SSH_KEY = False
# A copy is dumped over SSH on a vps source (vps-refresh.sh) and restored into this machine's cluster.
REFRESH_SOURCES = ("vps",)


class HOSTING(BaseModel):
    """`siteline:hosting.local`: where on this machine the site lives and which loopback ports it takes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    home: str = Field(default=".siteline", min_length=1)
    db_port: int = Field(default=55432, alias="dbPort", ge=1024, le=65535)
    mail_port: int = Field(default=2525, alias="mailPort", ge=1024, le=65535)


def check(config: Any, hosting: HOSTING) -> list[Problem]:
    """What this machine cannot do for a role: a public, protected live site."""
    found: list[Problem] = []
    if config.role == "live":
        found.append(("target", "is local on the live role; live runs on a server or a cloud",
                      "pulumi config set siteline:target vps|azure|aws"))
    if config.database.high_availability:
        found.append(("database.highAvailability", "is not available on the local target (one cluster, one machine)",
                      "pulumi config set --path siteline:database.highAvailability false"))
    if config.hosting.instances != 1:
        found.append(("hosting.instances", "must be 1 on the local target",
                      "pulumi config set --path siteline:hosting.instances 1"))
    ports = {"site.port": config.site.port, "hosting.local.dbPort": hosting.db_port,
             "hosting.local.mailPort": hosting.mail_port}
    if len(set(ports.values())) != len(ports):
        found.append(("hosting.local", f"uses one port twice ({', '.join(f'{k}={v}' for k, v in ports.items())})",
                      "give site.port, hosting.local.dbPort and hosting.local.mailPort different values"))
    return found


def _script(name: str) -> str:
    return f"bash {SCRIPTS / name}"


def _script_digest() -> str:
    # A changed script is a changed release procedure: feeding its hash to the commands makes
    # `pulumi up` run them again.
    digest = hashlib.sha256()
    for path in [*sorted(SCRIPTS.glob("local-*.sh")), SCRIPTS / "mailsink.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Target(pulumi.ComponentResource):
    url: pulumi.Output[str]
    database: pulumi.Output[dict[str, Any]]
    smtp: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: TargetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("siteline:targets:Local", name, None, opts)
        settings = args.settings
        cfg = settings.config
        hosting: HOSTING = settings.target_hosting
        child = pulumi.ResourceOptions(parent=self)
        # Moving the home is a new site: each command is replaced, the old one stopped first (same ports).
        home = str((settings.project_dir / hosting.home / settings.stack).resolve())
        common = {"SITELINE_HOME": home, "SITELINE_BIN": str(Path(sys.executable).parent),
                  "SITELINE_SCRIPTS": _script_digest()}
        copy = args.refresh
        # Checked before anything is declared: a source this target cannot reach registers nothing.
        source = refresh_source(copy) if copy is not None else None
        current_db = current_database(settings)
        db_params = {"DB_PORT": str(hosting.db_port), "DB_VERSION": cfg.database.version}

        password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)
        database = command.Command(
            f"{name}-database",
            create=f"{_script('local-db.sh')} up",
            delete=f"{_script('local-db.sh')} down",
            environment={**common, "DB_PORT": str(hosting.db_port), "DB_NAME": cfg.database.name,
                         "DB_USER": "siteline", "DB_VERSION": cfg.database.version,
                         "DB_RETAIN": "true" if cfg.database.retain_on_destroy else "false"},
            stdin=password.result,
            triggers=[home],
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout", "stderr"],
                                        delete_before_replace=True),
        )
        # With a refresh the site uses the copy: the env file changes, so the release restarts the site on it.
        database_url = pulumi.Output.secret(pulumi.Output.concat(
            "postgresql://siteline:", password.result, f"@127.0.0.1:{hosting.db_port}/{current_db}"))

        depends: list[pulumi.Resource] = [database]
        if copy is not None and source is not None:
            if settings.secrets.ssh_private_key is None:  # refresh.resolve refuses this earlier
                raise RefreshError("siteline:sshPrivateKey: a refresh from a vps stack needs the stack's SSH key")
            salt = random.RandomPassword(f"{name}-mask-salt", length=32, special=False,
                                         keepers={"refreshId": copy.refresh_id}, opts=child)
            # Once per refresh id (triggers); no delete: the release drops old copies after switching away.
            refreshed = command.Command(
                f"{name}-refresh",
                create=f"{_script('vps-refresh.sh')} pull",
                environment={**common, **db_params, **source, "COPY_DB": copy.database_name,
                             "ON_TARGET": _script("local-refresh.sh"), "MASK_SQL": mask.script(copy.mask)},
                # The salt (first line) and the private key travel on stdin only.
                stdin=pulumi.Output.secret(pulumi.Output.concat(salt.result, "\n", settings.secrets.ssh_private_key)),
                triggers=[copy.refresh_id, copy.database_name],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[database],
                                            additional_secret_outputs=["stdout", "stderr"]),
            )
            depends.append(refreshed)
        mail_plain: dict[str, pulumi.Input[str]] = {}
        if cfg.smtp.mode == "sink":
            mail = command.Command(
                f"{name}-mail-sink",
                create=f"{_script('local-mail.sh')} up",
                delete=f"{_script('local-mail.sh')} down",
                environment={**common, "MAIL_PORT": str(hosting.mail_port)},
                triggers=[home],
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            depends.append(mail)
            mail_plain = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(hosting.mail_port)}
        app_config = args.app_config.extended(plain=mail_plain, secret={"DATABASE_URL": database_url})

        release = args.release
        deploy = command.Command(
            f"{name}-release",
            create=f"{_script('local-release.sh')} deploy",
            delete=f"{_script('local-release.sh')} remove",
            environment={
                **common,
                "RELEASE_VERSION": release.version,
                "RELEASE_PACKAGE": release.package.apply(self._absolute(settings.project_dir)),
                "RELEASE_SHA256": release.sha256,
                "SITE_PORT": str(cfg.site.port),
                "SITE_START": cfg.site.start,
                "SITE_MIGRATE": cfg.site.migrate,
                "HEALTH_PATH": cfg.site.health_path,
                "HEALTH_TIMEOUT": str(cfg.site.health_timeout),
                **db_params, "DB_NAME": cfg.database.name, "DB_CURRENT": current_db,
            },
            stdin=app_config.env_file(),
            triggers=[home],
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends, delete_before_replace=True,
                                        additional_secret_outputs=["stdout", "stderr"]),
        )

        sink = cfg.smtp.mode == "sink"
        mail = outputs.smtp("127.0.0.1" if sink else str(cfg.smtp.host),
                            hosting.mail_port if sink else cfg.smtp.port, cfg.smtp.mode)
        # The URL waits for the release command, so consumers only see it once the site answers.
        self.url = deploy.id.apply(lambda _: f"http://127.0.0.1:{cfg.site.port}")
        self.database = database.id.apply(lambda _: {
            "engine": "postgres", "host": "127.0.0.1", "port": hosting.db_port,
            "name": current_db, "id": f"local:{home}/db/data"})
        self.smtp = pulumi.Output.from_input(mail)
        self.register_outputs({"url": self.url, "database": self.database, "smtp": self.smtp})

    @staticmethod
    def _absolute(project_dir: Path) -> Any:
        def resolve(package: str) -> str:
            return package if package.startswith("https://") else str((project_dir / package).resolve())
        return resolve
