"""Typed stack settings: read the `siteline` config once, validate all of it, explain every problem."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from components import problems as p
from components import targets

NAMESPACE = "siteline"

Role = Literal["dev", "test", "live", "review"]
Strategy = Literal["email", "name", "phone", "null", "fixed", "hash"]

VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
HOST_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]+@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
STACK_PATTERN = r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$"
ENV_NAME_PATTERN = r"^[A-Z][A-Z0-9_]*$"
IDENT_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"

# Variables the site gets from Siteline itself; user settings may not shadow them.
RESERVED_ENV = frozenset(
    {"DATABASE_URL", "PORT", "SITELINE_ROLE", "SITELINE_RELEASE", "SMTP_HOST", "SMTP_PORT",
     "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_FROM", "SMTP_MODE", "SMTP_ALLOW",
     "SITELINE_START", "SITELINE_MIGRATE", "SITELINE_SECRET_VERSIONS", "SITELINE_DEPLOYMENT"}
)


class Strict(BaseModel):
    """Unknown keys are refused: a typo in a stack file must not be silently ignored."""

    # `pulumi config set --path k 16` stores a number: a version or a size may arrive as one.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, coerce_numbers_to_str=True)


class ReleaseSpec(Strict):
    version: str = Field(pattern=VERSION_PATTERN)
    package: str = Field(min_length=1)
    # Optional on the first stack of the chain only: Siteline hashes the file it finds on disk.
    sha256: Optional[str] = Field(default=None, pattern=SHA256_PATTERN)


class VerifiedSpec(Strict):
    version: str = Field(pattern=VERSION_PATTERN)
    sha256: str = Field(pattern=SHA256_PATTERN)


class SiteSpec(Strict):
    start: str = Field(
        default="gunicorn --bind 127.0.0.1:${PORT} --workers 2 --graceful-timeout 10 app:application",
        min_length=1,
    )
    migrate: str = Field(default="python3 migrate.py", min_length=1)
    health_path: str = Field(default="/healthz", alias="healthPath", pattern=r"^/[A-Za-z0-9._~/-]*$")
    health_timeout: int = Field(default=60, alias="healthTimeout", ge=5, le=600)
    port: int = Field(default=8000, ge=1024, le=65535)
    runtime: str = Field(default="python:3.11", pattern=r"^python:3\.(1[0-9])$")
    required_secrets: tuple[str, ...] = Field(default=(), alias="requiredSecrets")


class HostingSpec(BaseModel):
    """Shared sizing plus one sub-object per target; each target module validates its own."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True, coerce_numbers_to_str=True)

    instances: int = Field(default=1, ge=1, le=30)
    size: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    domain: Optional[str] = Field(default=None, max_length=253, pattern=DOMAIN_PATTERN)


class MaskRule(Strict):
    table: str = Field(pattern=IDENT_PATTERN)
    column: str = Field(pattern=IDENT_PATTERN)
    strategy: Strategy
    value: Optional[str] = None


class DatabaseSpec(Strict):
    engine: Literal["postgres"] = "postgres"
    version: str = Field(default="16", pattern=r"^(13|14|15|16|17)$")
    name: str = Field(default="site", pattern=IDENT_PATTERN)
    size: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    storage_gb: int = Field(default=32, alias="storageGb", ge=20, le=16384)
    backup_retention_days: int = Field(default=7, alias="backupRetentionDays", ge=1, le=35)
    high_availability: StrictBool = Field(default=False, alias="highAvailability")
    refresh_from: Optional[str] = Field(default=None, alias="refreshFrom", pattern=STACK_PATTERN)
    refresh_id: Optional[str] = Field(default=None, alias="refreshId", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    mask: tuple[MaskRule, ...] = ()
    retain_on_destroy: StrictBool = Field(default=True, alias="retainOnDestroy")


class SmtpSpec(Strict):
    host: Optional[str] = Field(default=None, max_length=253, pattern=HOST_PATTERN)
    port: int = Field(default=587, ge=1, le=65535)
    username: Optional[str] = Field(default=None, min_length=1)
    from_address: str = Field(default="noreply@example.invalid", alias="from", pattern=EMAIL_PATTERN)
    mode: Literal["deliver", "sink", "allowlist"] = "sink"
    allow: tuple[str, ...] = ()
    allow_real_mail: StrictBool = Field(default=False, alias="allowRealMail")


class StackConfig(Strict):
    """The `siteline:*` keys of one stack, with role defaults applied."""

    role: Role
    target: str
    release: Optional[ReleaseSpec] = None
    promote_from: Optional[str] = Field(default=None, alias="promoteFrom", pattern=STACK_PATTERN)
    require_verified: StrictBool = Field(default=False, alias="requireVerified")
    verified: Optional[VerifiedSpec] = None
    site: SiteSpec = SiteSpec()
    hosting: HostingSpec = HostingSpec()
    database: DatabaseSpec = DatabaseSpec()
    settings: dict[str, str] = {}
    smtp: SmtpSpec = SmtpSpec()


# What a role gets when its stack file is silent. Live is the public site: real mail, long
# backups, two instances. Review stacks are throwaway: their database goes with them. `target`
# and `requireVerified` default in Pulumi.yaml (local, false); live is refused on local and
# refused without requireVerified, so it must set both.
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {"smtp": {"mode": "sink"}, "database": {"backupRetentionDays": 7}},
    "review": {"smtp": {"mode": "sink"}, "database": {"backupRetentionDays": 1, "retainOnDestroy": False}},
    "test": {"smtp": {"mode": "sink"}, "database": {"backupRetentionDays": 7}},
    "live": {"smtp": {"mode": "deliver"}, "hosting": {"instances": 2}, "database": {"backupRetentionDays": 35}},
}

# Top-level keys whose values may hold `secure:` leaves. They are never echoed in errors.
SECRET_BEARING = frozenset({"secrets", "smtp", "sshPrivateKey"})
KNOWN_KEYS = frozenset(f.alias or n for n, f in StackConfig.model_fields.items()) | SECRET_BEARING


@dataclass(frozen=True)
class SecretInputs:
    """Secret values, only ever as secret Outputs."""

    values: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    smtp_password: Optional[pulumi.Output[str]] = None
    ssh_private_key: Optional[pulumi.Output[str]] = None


@dataclass(frozen=True)
class Settings:
    """Everything the components need, validated. Components read this, never pulumi.Config."""

    project: str
    stack: str
    organization: str
    config: StackConfig
    secrets: SecretInputs
    target_hosting: Any  # the pydantic model the active target's module declares
    project_dir: Path

    @property
    def role(self) -> str:
        return self.config.role

    @property
    def target(self) -> str:
        return self.config.target


def infer_role(stack: str) -> Optional[str]:
    if stack in ("dev", "test", "live"):
        return stack
    if stack in ("prod", "production"):
        return "live"
    if re.fullmatch(r"pr-[0-9]+", stack):
        return "review"
    return None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _raw(key: str) -> Any:
    """The stored value of one key, parsed like Config.get_object does (None when unset)."""
    text = runtime_config.get_config(f"{NAMESPACE}:{key}")
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _is_secret(key: str) -> bool:
    return runtime_config.is_config_secret(f"{NAMESPACE}:{key}")


def _all_keys() -> list[str]:
    """Every `siteline:*` key that is set, so unknown (misspelled) keys can be reported."""
    prefix = f"{NAMESPACE}:"
    known = {*runtime_config.CONFIG.get(), *(runtime_config.get_config_env() or {})}
    return sorted(k[len(prefix):] for k in known if k.startswith(prefix))


def _plaintext_leaves(root: Path, stack: str) -> list[str]:
    """Secret leaves written in clear in Pulumi.<stack>.yaml.

    The runtime only says whether a whole top-level key holds a secret, so a plain value beside a
    `secure:` one would go unnoticed; the stack file says it per leaf.
    """
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        return []
    config = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}

    def plain(value: Any, path: str) -> list[str]:
        if isinstance(value, dict) and set(value) == {"secure"}:
            return []
        if isinstance(value, dict):
            return [leaf for key, inner in value.items() for leaf in plain(inner, f"{path}.{key}")]
        return [path]

    found = plain(config.get(f"{NAMESPACE}:secrets", {}), "secrets") if f"{NAMESPACE}:secrets" in config else []
    smtp = config.get(f"{NAMESPACE}:smtp")
    if isinstance(smtp, dict) and "password" in smtp:
        found += plain(smtp["password"], "smtp.password")
    if f"{NAMESPACE}:sshPrivateKey" in config:
        found += plain(config[f"{NAMESPACE}:sshPrivateKey"], "sshPrivateKey")
    return found


def _scalar_settings(raw: Any, report: p.Report) -> dict[str, str]:
    """`settings` become environment variables: scalars only, names in upper snake case."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report.add("settings", "must be an object of NAME: value pairs", p.fix_set("settings.FEATURE_FLAG", "on"))
        return {}
    plain: dict[str, str] = {}
    for name, value in raw.items():
        if not re.fullmatch(ENV_NAME_PATTERN, str(name)):
            report.add(f"settings.{name}", "is not an environment variable name (use UPPER_SNAKE_CASE)",
                       f"rename it, for example settings.{str(name).upper().replace('-', '_')}")
        elif name in RESERVED_ENV:
            report.add(f"settings.{name}", "is set by Siteline itself and cannot be overridden",
                       f"remove it: pulumi config rm --path 'siteline:settings.{name}'")
        elif isinstance(value, (dict, list)) or value is None:
            report.add(f"settings.{name}", "must be a string, number or boolean",
                       p.fix_set(f"settings.{name}", "value"))
        else:
            plain[name] = json.dumps(value) if isinstance(value, bool) else str(value)
    return plain


def _secret_names(raw: Any, report: p.Report) -> list[str]:
    """Names of `siteline:secrets` leaves. Values are never read here, only the names."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        report.add("secrets", "must be an object whose every leaf is a secret",
                   p.fix_secret("secrets.API_KEY"))
        return []
    names: list[str] = []
    for name, value in raw.items():
        if not re.fullmatch(ENV_NAME_PATTERN, str(name)):
            report.add(f"secrets.{name}", "is not an environment variable name (use UPPER_SNAKE_CASE)",
                       f"set it again under an upper-case name: {p.fix_secret('secrets.' + str(name).upper())}")
        elif name in RESERVED_ENV:
            report.add(f"secrets.{name}", "is set by Siteline itself and cannot be overridden",
                       f"remove it: pulumi config rm --path 'siteline:secrets.{name}'")
        elif isinstance(value, (dict, list)) or value is None:
            report.add(f"secrets.{name}", "must be a single secret string", p.fix_secret(f"secrets.{name}"))
        else:
            names.append(str(name))
    if names and not _is_secret("secrets"):
        report.add("secrets", "is stored in plain text in the stack file",
                   "remove it with pulumi config rm siteline:secrets, then set each value with "
                   + p.fix_secret("secrets.<NAME>"))
    return names


def _validate(report: p.Report, key: str, model: type[BaseModel], raw: Any, secret_bearing: bool = False) -> Any:
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        report.extend(p.from_validation(err, prefix=key, echo_values=not secret_bearing))
        return None


def load_settings(project_dir: Optional[Path] = None) -> Settings:
    """Read and validate the whole `siteline` namespace; raise one ConfigError listing every problem."""
    project = pulumi.get_project()
    stack = pulumi.get_stack()
    report = p.Report(stack)
    config = pulumi.Config(NAMESPACE)
    root = Path(project_dir) if project_dir else Path.cwd()

    secret_elsewhere: set[str] = set()
    for key in _all_keys():
        top = key.split(".")[0]
        if top not in KNOWN_KEYS:
            report.add(key, "is not a Siteline config key",
                       f"remove it with pulumi config rm siteline:{key} (known keys: {', '.join(sorted(KNOWN_KEYS))})")
        elif top not in SECRET_BEARING and _is_secret(top):
            # Such a key is read as plain config: its value would reach resources in plain text.
            secret_elsewhere.add(top)
            report.add(top, "holds a secret value, but only siteline:secrets, siteline:smtp.password and "
                       "siteline:sshPrivateKey are kept secret",
                       "remove the secret from this key and set it with " + p.fix_secret("secrets.<NAME>"))
    for path in _plaintext_leaves(root, stack):
        report.add(path, "is stored in plain text in the stack file", p.fix_secret(path))

    raw: dict[str, Any] = {}
    for key in ("role", "target", "release", "promoteFrom", "requireVerified", "verified",
                "site", "hosting", "database"):
        value = _raw(key) if key not in secret_elsewhere else None
        if value is not None:
            raw[key] = value

    role = raw.get("role") or infer_role(stack)
    if role is None:
        report.add("role", f"cannot be inferred from the stack name '{stack}'",
                   "pulumi config set siteline:role dev|test|live|review")
        role = "dev"
    elif role not in ROLE_DEFAULTS:
        report.add("role", f"must be one of dev, test, live, review (got {role!r})",
                   "pulumi config set siteline:role live")
        role = "dev"
    raw["role"] = role

    smtp_raw = _raw("smtp")
    smtp_has_password = False
    if smtp_raw is not None and not isinstance(smtp_raw, dict):
        report.add("smtp", "must be an object", p.fix_set("smtp.host", "smtp.example.com"))
        smtp_raw = None
    if isinstance(smtp_raw, dict):
        # The password is taken out before validation: it only ever travels as a secret Output.
        smtp_raw = dict(smtp_raw)
        smtp_has_password = smtp_raw.pop("password", None) not in (None, "")
        if smtp_has_password and not _is_secret("smtp"):
            report.add("smtp.password", "is stored in plain text in the stack file",
                       p.fix_secret("smtp.password"))
        raw["smtp"] = smtp_raw

    # Pulumi.yaml defaults target to local; repeated here for programs run outside the CLI.
    merged = _deep_merge({**ROLE_DEFAULTS[role], "target": "local"}, raw)

    plain_settings = _scalar_settings(_raw("settings") if "settings" not in secret_elsewhere else None, report)
    secret_names = _secret_names(_raw("secrets"), report)

    parts: dict[str, Any] = {}
    for key, model in (("release", ReleaseSpec), ("verified", VerifiedSpec), ("site", SiteSpec),
                       ("hosting", HostingSpec), ("database", DatabaseSpec), ("smtp", SmtpSpec)):
        if key in merged:
            parts[key] = _validate(report, key, model, merged[key], secret_bearing=key in SECRET_BEARING)
    scalars = {k: merged[k] for k in ("role", "target", "promoteFrom", "requireVerified") if k in merged}
    try:
        head = StackConfig.model_validate(scalars)
    except ValidationError as err:
        report.extend(p.from_validation(err, prefix="", echo_values=True))
        head = None

    target_hosting = None
    target_name = merged["target"]
    if target_name not in targets.available():
        report.add("target", f"must be one of {', '.join(targets.available())} (got {target_name!r})",
                   "pulumi config set siteline:target local")
    hosting_value = merged.get("hosting")
    hosting_raw: dict[str, Any] = hosting_value if isinstance(hosting_value, dict) else {}
    for name in sorted(set(hosting_raw) - set(HostingSpec.model_fields)):
        if name not in targets.available():
            report.add(f"hosting.{name}", "is not a target's hosting block",
                       f"use one of hosting.{', hosting.'.join(targets.available())}")
            continue
        hosting_model = targets.load(name).HOSTING
        validated = _validate(report, f"hosting.{name}", hosting_model, hosting_raw[name])
        if name == target_name:
            target_hosting = validated
    if target_name in targets.available() and target_name not in hosting_raw:
        hosting_model = targets.load(target_name).HOSTING
        target_hosting = _validate(report, f"hosting.{target_name}", hosting_model, None)

    if head is None:
        raise report.error()
    # Cross-key rules still run when some keys failed, on defaults for those keys; what they say
    # about a failed key is dropped, since its own problem is already listed.
    failed = {key for key, value in parts.items() if value is None}
    stack_config = head.model_copy(update={
        **{k: v for k, v in parts.items() if v is not None}, "settings": plain_settings})
    rules = p.Report(stack)
    _check_rules(rules, stack_config, target_hosting, root)
    _check_secrets(rules, stack_config, secret_names, smtp_has_password)
    report.extend([entry for entry in rules.problems if entry.path.split(".")[0].split("[")[0] not in failed])
    report.raise_if_any()

    secrets = SecretInputs(
        values={name: _secret_leaf(config, "secrets", name) for name in secret_names},
        smtp_password=_secret_leaf(config, "smtp", "password") if smtp_has_password else None,
        ssh_private_key=config.get_secret("sshPrivateKey"),
    )
    return Settings(project=project, stack=stack, organization=pulumi.get_organization(),
                    config=stack_config, secrets=secrets, target_hosting=target_hosting, project_dir=root)


def _secret_leaf(config: pulumi.Config, key: str, leaf: str) -> pulumi.Output[str]:
    """One leaf of an object read with the secret getter; apply on a secret Output stays secret."""
    whole = config.get_secret_object(key)
    if whole is None:
        raise KeyError(f"siteline:{key} vanished between validation and use")
    return whole.apply(lambda values: str(values[leaf]))


def _check_rules(report: p.Report, cfg: StackConfig, target_hosting: Any, root: Path) -> None:
    """Rules that span keys: the guardrails of each role."""
    role, smtp, db = cfg.role, cfg.smtp, cfg.database

    if cfg.release and cfg.promote_from:
        report.add("release", "and siteline:promoteFrom are both set; a stack either starts the chain or is promoted",
                   "keep release on the first stack only: pulumi config rm siteline:release")
    if not cfg.release and not cfg.promote_from:
        report.add("release", "is missing: the stack has neither a release nor an upstream to promote from",
                   "build one with python3 examples/site/package.py --version 1.0.0 and set siteline:release, "
                   "or pulumi config set siteline:promoteFrom <org>/siteline/<upstream stack>")
    if cfg.require_verified and not cfg.promote_from:
        report.add("requireVerified", "needs siteline:promoteFrom: only an upstream stack can verify a release",
                   "pulumi config set siteline:promoteFrom <org>/siteline/test")
    if role == "live" and not cfg.require_verified:
        report.add("requireVerified", "is false on live: live must only take a release that test verified",
                   "pulumi config set siteline:requireVerified true")
    if cfg.verified and role != "test":
        report.add("verified", f"is only meaningful on the test role (this stack is {role})",
                   "pulumi config rm siteline:verified")
    if cfg.release and cfg.release.sha256 is None and role == "live":
        report.add("release.sha256", "is required on live", p.fix_set("release.sha256", "<sha256 of the package>"))
    if cfg.release:
        _check_package(report, cfg.release, root)

    if smtp.mode == "deliver" and role != "live" and not smtp.allow_real_mail:
        report.add("smtp.mode", f"is deliver on the {role} role, which would mail real people with test data",
                   "use pulumi config set --path siteline:smtp.mode sink (or allowlist), or set "
                   "siteline:smtp.allowRealMail true if this stack really must send real mail")
    if smtp.mode == "allowlist" and not smtp.allow:
        report.add("smtp.allow", "is empty, so allowlist mode would send nothing",
                   p.fix_set("smtp.allow[0]", "example.com"))
    for index, domain in enumerate(smtp.allow):
        if not re.fullmatch(DOMAIN_PATTERN, domain):
            report.add(f"smtp.allow[{index}]", "is not a lower-case domain name",
                       p.fix_set(f"smtp.allow[{index}]", "example.com"))
    module = targets.load(cfg.target) if cfg.target in targets.available() else None
    needs_relay = smtp.mode in ("deliver", "allowlist") or (module is not None and not module.BUILTIN_MAIL_SINK)
    if needs_relay and not smtp.host:
        report.add("smtp.host", f"is required for smtp.mode {smtp.mode} on the {cfg.target} target",
                   p.fix_set("smtp.host", "smtp.example.com"))
    if db.refresh_from and role == "live":
        report.add("database.refreshFrom", "is set on live; the database flows down from live, never into it",
                   "pulumi config rm --path siteline:database.refreshFrom")
    if db.refresh_id and not db.refresh_from:
        report.add("database.refreshId", "needs database.refreshFrom",
                   p.fix_set("database.refreshFrom", "<org>/siteline/live"))
    seen: dict[tuple[str, str], int] = {}
    for index, rule in enumerate(db.mask):
        first = seen.setdefault((rule.table, rule.column), index)
        if first != index:
            report.add(f"database.mask[{index}]",
                       f"masks {rule.table}.{rule.column} again (mask[{first}] already does)",
                       f"pulumi config rm --path 'siteline:database.mask[{index}]'")
        if rule.strategy == "fixed" and rule.value is None:
            report.add(f"database.mask[{index}].value", "is required by the fixed strategy",
                       p.fix_set(f"database.mask[{index}].value", "masked"))
        if rule.strategy != "fixed" and rule.value is not None:
            report.add(f"database.mask[{index}].value",
                       f"is only used by the fixed strategy (this rule is {rule.strategy})",
                       f"pulumi config rm --path 'siteline:database.mask[{index}].value'")
    if role == "live" and not db.retain_on_destroy:
        report.add("database.retainOnDestroy", "is false on live; live data is never deleted with the stack",
                   "pulumi config rm --path siteline:database.retainOnDestroy")
    if role == "live" and db.backup_retention_days < 7:
        report.add("database.backupRetentionDays", f"is {db.backup_retention_days} on live; live keeps at least 7 days",
                   p.fix_set("database.backupRetentionDays", "35"))

    for name in cfg.site.required_secrets:
        if not re.fullmatch(ENV_NAME_PATTERN, name):
            report.add("site.requiredSecrets", f"holds {name!r}, which is not an environment variable name",
                       "use UPPER_SNAKE_CASE names")

    if module is not None and target_hosting is not None:
        for path, problem, fix in module.check(cfg, target_hosting):
            report.add(path, problem, fix)


def _check_package(report: p.Report, release: ReleaseSpec, root: Path) -> None:
    """A package on disk must match its sha256 now, at preview; a URL is verified where it is fetched."""
    if release.package.startswith("https://"):
        if release.sha256 is None:
            report.add("release.sha256", "is required when the package is a URL",
                       p.fix_set("release.sha256", "<sha256>"))
        return
    if release.package.startswith(("http://", "ftp://")):
        report.add("release.package", "must be a file path or an https URL", p.fix_set("release.package", "https://…/site.zip"))
        return
    from components.release import file_sha256  # the one place that hashes packages

    path = (root / release.package).resolve()
    if not path.is_file():
        report.add("release.package", f"{release.package} does not exist",
                   f"build it: python3 examples/site/package.py --version {release.version}")
        return
    actual = file_sha256(path)
    if release.sha256 is not None and actual != release.sha256:
        report.add("release.sha256", f"does not match {release.package} (the file hashes to {actual})",
                   "rebuild the package or set the sha256 the build printed")


def _check_secrets(report: p.Report, cfg: StackConfig, secret_names: list[str], smtp_has_password: bool) -> None:
    """Every secret the stack needs, missing ones listed together with the command that sets each."""
    for name in cfg.site.required_secrets:
        if name not in secret_names:
            report.add(f"secrets.{name}", "is missing (site.requiredSecrets lists it)", p.fix_secret(f"secrets.{name}"))
    if cfg.smtp.username and not smtp_has_password:
        report.add("smtp.password", "is missing (smtp.username is set)", p.fix_secret("smtp.password"))
    needs_key = cfg.target in targets.available() and targets.load(cfg.target).NEEDS_SSH_KEY
    if needs_key and _raw("sshPrivateKey") in (None, ""):
        report.add("sshPrivateKey", f"is missing (the {cfg.target} target connects over SSH)",
                   "pulumi config set --secret siteline:sshPrivateKey < ~/.ssh/siteline_ed25519")
    elif _raw("sshPrivateKey") not in (None, "") and not _is_secret("sshPrivateKey"):
        report.add("sshPrivateKey", "is stored in plain text in the stack file",
                   "pulumi config set --secret siteline:sshPrivateKey < ~/.ssh/siteline_ed25519")
