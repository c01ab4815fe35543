"""Target `vps`: a Debian/Ubuntu server over SSH, with blue/green releases behind nginx under systemd."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

import pulumi
import pulumi_random as random
from pulumi_command import local, remote
from pydantic import BaseModel, ConfigDict, Field

from components import mask, outputs
from components.refresh import Refresh, RefreshError, current_database
from components.release import file_sha256
from components.targets import Problem, TargetArgs

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
MAIL_SINK = SCRIPTS / "mailsink.py"
BUILTIN_MAIL_SINK = True
NEEDS_SSH_KEY = True
# A copy is dumped on the source server over SSH, so it must be a vps stack too.
REFRESH_SOURCES = ("vps",)

LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = rf"^({LABEL}(\.{LABEL})*|\[[0-9A-Fa-f:.]+\])$"
# An authorized_keys-style public key line, as `ssh-keyscan` or /etc/ssh/ssh_host_*_key.pub give it.
HOST_KEY_PATTERN = r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$"
PATH_PATTERN = r"^(/[A-Za-z0-9._-]+)+$"
# The library every script sources; vps.py inlines it where the scripts source it.
LIBRARY_LINE = re.compile(r'^\. "\$\(dirname "\$0"\)/vps-lib\.sh"$', re.MULTILINE)
# (create action, delete action) of each script.
ACTIONS = {"vps-bootstrap.sh": ("up", "down"), "vps-mail.sh": ("up", "down"), "vps-release.sh": ("deploy", "remove")}


class HOSTING(BaseModel):
    """`siteline:hosting.vps`: the server, how to reach it (host key pinned) and the ports it gives the site."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    host: str = Field(max_length=253, pattern=HOST_PATTERN)
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    port: int = Field(default=22, ge=1, le=65535)
    host_key: str = Field(alias="hostKey", pattern=HOST_KEY_PATTERN)
    app_user: str = Field(default="siteline", alias="appUser", pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    base_path: str = Field(default="/srv/siteline", alias="basePath", pattern=PATH_PATTERN)
    http_port: int = Field(default=80, alias="httpPort", ge=1, le=65535)
    listen_address: Optional[str] = Field(default=None, alias="listenAddress",
                                          pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
    blue_port: int = Field(default=8001, alias="bluePort", ge=1024, le=65535)
    green_port: int = Field(default=8002, alias="greenPort", ge=1024, le=65535)
    mail_port: int = Field(default=2525, alias="mailPort", ge=1024, le=65535)
    db_port: int = Field(default=5432, alias="dbPort", ge=1024, le=65535)
    keep_releases: int = Field(default=3, alias="keepReleases", ge=1, le=50)
    drain_timeout: int = Field(default=30, alias="drainTimeout", ge=0, le=600)


def check(config: Any, hosting: HOSTING) -> list[Problem]:
    """What one server cannot promise."""
    found: list[Problem] = []
    if config.hosting.instances != 1:
        found.append(("hosting.instances", f"is {config.hosting.instances}, but the vps target is one server "
                      "(blue/green runs a second instance only during a release)",
                      "pulumi config set --path siteline:hosting.instances 1, or use the azure or aws target"))
    if config.database.high_availability:
        found.append(("database.highAvailability", "is not available on the vps target (one PostgreSQL on one server)",
                      "pulumi config set --path siteline:database.highAvailability false"))
    ports = {"hosting.vps.httpPort": hosting.http_port, "hosting.vps.bluePort": hosting.blue_port,
             "hosting.vps.greenPort": hosting.green_port, "hosting.vps.dbPort": hosting.db_port}
    if config.smtp.mode == "sink":
        ports["hosting.vps.mailPort"] = hosting.mail_port
    if len(set(ports.values())) != len(ports):
        found.append(("hosting.vps", f"uses one port twice ({', '.join(f'{k}={v}' for k, v in ports.items())})",
                      "give each of these ports its own value"))
    return found


def script(name: str) -> str:
    """A script with the shared library inlined: each command carries all it runs, so a `delete`
    replayed from old state never depends on files a newer release left (or removed) on the server."""
    library = (SCRIPTS / "vps-lib.sh").read_text()
    return LIBRARY_LINE.sub(lambda _: library, (SCRIPTS / name).read_text(), count=1)


def command_line(name: str, action: str, params: Mapping[str, str], sudo: bool) -> str:
    """`env K=V … bash -c SCRIPT name action`. Parameters ride on the command line because a stock
    sshd drops `environment` (AcceptEnv LANG LC_*); none of them is secret, secrets go on stdin."""
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(params.items()))
    prefix = "sudo -n " if sudo else ""
    return f"{prefix}env {assignments} bash -c {shlex.quote(script(name))} {name} {action}"


def refresh_source(copy: Refresh) -> dict[str, str]:
    """Where the source database is: its `database.id` (ssh://user@host:port/dbname), port and pinned host key."""
    source = copy.source
    where = urlsplit(str(source.get("id", "")))
    host_key = str(source.get("hostKey", ""))
    try:
        ssh_port = where.port or 22
        # A number read back through a stack reference may arrive as a float (5432.0).
        db_port = int(float(source.get("port", 5432)))
    except (TypeError, ValueError):
        ssh_port = db_port = 0
    if (where.scheme != "ssh" or not where.hostname or not where.path.strip("/") or not ssh_port or not db_port
            or not re.match(HOST_KEY_PATTERN, host_key)):
        raise RefreshError(
            f"siteline:database.refreshFrom: {copy.source_stack} exports database id {source.get('id')!r} and "
            f"hostKey {host_key[:40]!r}; a vps refresh needs ssh://user@host:port/dbname and the server's host key. "
            f"Fix: run pulumi up on {copy.source_stack} with this version of Siteline first.")
    return {"SOURCE_HOST": where.hostname, "SOURCE_PORT": str(ssh_port),
            "SOURCE_USER": unquote(where.username or "root"), "SOURCE_HOST_KEY": host_key,
            "SOURCE_DB": unquote(where.path.strip("/")), "SOURCE_DB_PORT": str(db_port)}


class Target(pulumi.ComponentResource):
    url: pulumi.Output[str]
    database: pulumi.Output[dict[str, Any]]
    smtp: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: TargetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("siteline:targets:Vps", name, None, opts)
        settings = args.settings
        cfg = settings.config
        hosting: HOSTING = settings.target_hosting
        child = pulumi.ResourceOptions(parent=self)
        sudo = hosting.user != "root"
        base = hosting.base_path
        copy = args.refresh
        # Checked before anything is declared: a source this target cannot reach registers nothing.
        source = refresh_source(copy) if copy is not None else None
        current_db = current_database(settings)

        # The whole connection is secret (it holds the private key); the host key is pinned, so a
        # server answering with another key is refused instead of being trusted on first use.
        connection = pulumi.Output.secret(remote.ConnectionArgs(
            host=hosting.host.strip("[]"), port=hosting.port, user=hosting.user,
            private_key=settings.secrets.ssh_private_key, host_key=hosting.host_key))

        def run(resource: str, script_name: str, create: Mapping[str, pulumi.Input[str]], delete: Mapping[str, str],
                stdin: Optional[pulumi.Output[str]], depends_on: list[pulumi.Resource]) -> remote.Command:
            keys = sorted(create)
            up, down = ACTIONS[script_name]
            create_line = pulumi.Output.all(*[create[k] for k in keys]).apply(
                lambda values: command_line(script_name, up, dict(zip(keys, values, strict=True)), sudo))
            return remote.Command(
                f"{name}-{resource}", connection=connection, create=create_line,
                delete=command_line(script_name, down, delete, sudo), stdin=stdin,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on,
                                            additional_secret_outputs=["stdout", "stderr"]))

        password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)
        db = cfg.database
        server = {"APP_USER": hosting.app_user, "BASE": base, "BLUE_PORT": str(hosting.blue_port),
                  "GREEN_PORT": str(hosting.green_port)}
        bootstrap_params = {
            **server, "SSH_USER": hosting.user, "HTTP_PORT": str(hosting.http_port),
            "LISTEN_ADDRESS": hosting.listen_address or "", "SERVER_NAME": cfg.hosting.domain or "_",
            "DB_PORT": str(hosting.db_port), "DB_NAME": db.name, "DB_VERSION": db.version,
            "DB_RETAIN": "true" if db.retain_on_destroy else "false", "BACKUP_DAYS": str(db.backup_retention_days),
        }
        bootstrap = run("bootstrap", "vps-bootstrap.sh", bootstrap_params, bootstrap_params,
                        stdin=pulumi.Output.secret(password.result.apply(lambda p: p + "\n")), depends_on=[])
        # With a refresh the site uses the copy: the env file changes, so the release switches to it blue/green.
        database_url = pulumi.Output.secret(pulumi.Output.concat(
            f"postgresql://{hosting.app_user}:", password.result, f"@127.0.0.1:{hosting.db_port}/{current_db}"))

        release_depends: list[pulumi.Resource] = [bootstrap]
        refreshed: Optional[local.Command] = None
        if copy is not None and source is not None:
            refreshed = self._refresh(name, copy, source, hosting, settings.secrets.ssh_private_key, bootstrap)
            release_depends.append(refreshed)
        mail_plain: dict[str, pulumi.Input[str]] = {}
        if cfg.smtp.mode == "sink":
            sink_sha256 = file_sha256(MAIL_SINK)
            staged_sink = f"{base}/staging/mailsink-{sink_sha256}.py"
            sink_copy = remote.CopyToRemote(
                f"{name}-mail-sink-copy", connection=connection, source=pulumi.FileAsset(str(MAIL_SINK)),
                remote_path=staged_sink, opts=pulumi.ResourceOptions(parent=self, depends_on=[bootstrap]))
            mail_params = {"APP_USER": hosting.app_user, "BASE": base, "MAIL_PORT": str(hosting.mail_port)}
            mail = run("mail-sink", "vps-mail.sh",
                       {**mail_params, "STAGED": staged_sink, "MAILSINK_SHA256": sink_sha256}, mail_params,
                       stdin=None, depends_on=[sink_copy])
            release_depends.append(mail)
            mail_plain = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(hosting.mail_port)}
        app_config = args.app_config.extended(plain=mail_plain, secret={"DATABASE_URL": database_url})

        release = args.release
        # The package travels under its sha256, so two releases never share a staging path.
        staged = pulumi.Output.all(release.package, release.sha256).apply(
            lambda ps: f"{base}/staging/{ps[1]}{'.url' if ps[0].startswith('https://') else '.zip'}")
        package_copy = remote.CopyToRemote(
            f"{name}-package", connection=connection,
            source=release.package.apply(self._asset(settings.project_dir)), remote_path=staged,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[bootstrap]))
        release_params: dict[str, pulumi.Input[str]] = {
            **server, "VERSION": release.version, "SHA256": release.sha256, "STAGED": staged,
            "SITE_START": cfg.site.start, "SITE_MIGRATE": cfg.site.migrate, "HEALTH_PATH": cfg.site.health_path,
            "HTTP_PORT": str(hosting.http_port), "LISTEN_ADDRESS": hosting.listen_address or "",
            "KEEP": str(hosting.keep_releases), "HEALTH_TIMEOUT": str(cfg.site.health_timeout),
            "DRAIN_TIMEOUT": str(hosting.drain_timeout),
            "DB_PORT": str(hosting.db_port), "DB_NAME": db.name, "DB_CURRENT": current_db,
        }
        # The env file holds secrets: it goes on stdin, never on the command line or as `environment`.
        deploy = run("release", "vps-release.sh", release_params, server, stdin=app_config.env_file(),
                     depends_on=[*release_depends, package_copy])

        public_host = cfg.hosting.domain or hosting.host
        port_suffix = "" if hosting.http_port == 80 else f":{hosting.http_port}"
        # The URL waits for the release command, so consumers only see it once the site answers.
        self.url = deploy.id.apply(lambda _: f"http://{public_host}{port_suffix}")
        # What a refresh from this stack needs: where to dump (id) and the host key to pin; no credential.
        self.database = pulumi.Output.all(bootstrap.id, refreshed.id if refreshed else "").apply(lambda _: {
            "engine": "postgres", "host": hosting.host, "port": hosting.db_port, "name": current_db,
            "id": f"ssh://{hosting.user}@{hosting.host}:{hosting.port}/{current_db}", "hostKey": hosting.host_key})
        sink = cfg.smtp.mode == "sink"
        self.smtp = pulumi.Output.from_input(outputs.smtp("127.0.0.1" if sink else str(cfg.smtp.host),
                                                          hosting.mail_port if sink else cfg.smtp.port, cfg.smtp.mode))
        self.register_outputs({"url": self.url, "database": self.database, "smtp": self.smtp})

    def _refresh(self, name: str, copy: Refresh, source: dict[str, str], hosting: HOSTING,
                 private_key: Optional[pulumi.Output[str]], bootstrap: remote.Command) -> local.Command:
        """The masked copy, once per refresh id: triggers replace it when the id changes; it has no delete,
        because dropping a copy is the release's job once the site has switched away from it."""
        if private_key is None:  # refresh.resolve refuses this earlier; kept for the type checker
            raise RefreshError("siteline:sshPrivateKey: a vps refresh needs the stack's SSH key")
        salt = random.RandomPassword(f"{name}-mask-salt", length=32, special=False,
                                     keepers={"refreshId": copy.refresh_id}, opts=pulumi.ResourceOptions(parent=self))
        server = {"DB_PORT": str(hosting.db_port), "COPY_DB": copy.database_name, "APP_USER": hosting.app_user}
        environment = {
            **source, "TARGET_HOST": hosting.host.strip("[]"), "TARGET_PORT": str(hosting.port),
            "TARGET_USER": hosting.user, "TARGET_HOST_KEY": hosting.host_key, "COPY_DB": copy.database_name,
            "ON_TARGET": command_line("vps-refresh.sh", "", server, hosting.user != "root").rstrip(),
            "MASK_SQL": mask.script(copy.mask),
        }
        # The salt (first line) and the private key go on stdin only: never on a command line or in the env.
        stdin = pulumi.Output.secret(pulumi.Output.concat(salt.result, "\n", private_key))
        return local.Command(
            f"{name}-refresh", create=f"bash -c {shlex.quote(script('vps-refresh.sh'))} vps-refresh.sh pull",
            environment=environment, stdin=stdin, triggers=[copy.refresh_id, copy.database_name],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[bootstrap],
                                        additional_secret_outputs=["stdout", "stderr"]))

    @staticmethod
    def _asset(project_dir: Path) -> Any:
        def asset(package: str) -> pulumi.Asset:
            # An https package is fetched by the server itself; what travels is its URL.
            if package.startswith("https://"):
                return pulumi.StringAsset(package + "\n")
            return pulumi.FileAsset(str((project_dir / package).resolve()))
        return asset

