"""Siteline's CrossGuard rules: what no stack may deploy, and what live must always have.

Each rule is a plain validator function plus the Policy that wraps it, so tests call the validators
directly and `__main__.py` only assembles the pack. This module imports nothing from the Siteline
program: the pack runs in its own virtualenv, next to any program that uses these resource types.

Where a rule depends on the role (live or not), the role comes from the `siteline:index:Environment`
component (its `role` input, and its `role` output at stack level), and only when no such component
is in the stack, from the stack name in the URN (dev, test, live, prod, production, pr-<n>).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

ENVIRONMENT = "siteline:index:Environment"
WEB_APPS = ("azure-native:web:WebApp", "azure-native:web:WebAppSlot")
APP_SETTINGS = ("azure-native:web:WebAppApplicationSettings", "azure-native:web:WebAppApplicationSettingsSlot")
AZURE_POSTGRES = "azure-native:dbforpostgresql:Server"
AZURE_FIREWALL_RULE = "azure-native:dbforpostgresql:FirewallRule"
KEY_VAULT = "azure-native:keyvault:Vault"
APP_SERVICE_PLAN = "azure-native:web:AppServicePlan"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"
LOCKS = ("azure-native:authorization:ManagementLockAtResourceGroupLevel",
         "azure-native:authorization:ManagementLockAtResourceLevel",
         "azure-native:authorization:ManagementLockByScope")
RDS_INSTANCE = "aws:rds/instance:Instance"
S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BEANSTALK_ENVIRONMENT = "aws:elasticbeanstalk/environment:Environment"
REMOTE_COMMANDS = ("command:remote:Command", "command:remote:CopyToRemote", "command:remote:CopyFile")
RELEASE_COMMANDS = ("command:local:Command", "command:remote:Command")

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A setting is secret-like when its last word says so (CRM_API_KEY, ADMIN_TOKEN, SMTP_PASSWORD) or it
# is a connection string. The last word, not any word: KEY_VAULT_URI names a vault, it holds no key.
SECRET_NAME = re.compile(
    r"(^|_)(KEY|APIKEY|TOKEN|PASSWORD|PASSWD|PASSPHRASE|SECRET)$|DATABASE_URL$|CONNECTION_?STRING$")
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
AWS_SECRET_REFERENCE = ("arn:aws:secretsmanager:", "arn:aws:ssm:", "{{resolve:")
LIVE_BACKUP_DAYS = 35
# An Azure firewall range wider than this is "the internet", not an app's outbound addresses.
MAX_FIREWALL_ADDRESSES = 256

Props = Mapping[str, Any]
# Resource rules report a message only: the engine ties it to the resource being validated.
ResourceReport = Callable[..., None]


# --- reading props ------------------------------------------------------------------------------

def get(props: Any, path: str, default: Any = None) -> Any:
    """`props` at a dotted path ("siteConfig.minTlsVersion"); `default` where any step is missing."""
    node = props
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


def items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def stack_of(urn: str) -> str:
    """urn:pulumi:<stack>::<project>::<type>::<name> -> <stack>."""
    parts = urn.split("::")
    return parts[0].rsplit(":", 1)[-1] if parts and parts[0].startswith("urn:pulumi:") else ""


def role_from_stack(stack: str) -> Optional[str]:
    """The same inference as the program's settings, for stacks without the Environment component."""
    if stack in ("dev", "test", "live"):
        return stack
    if stack in ("prod", "production"):
        return "live"
    if re.fullmatch(r"pr-[0-9]+", stack):
        return "review"
    return None


def stack_role(resources: Iterable[PolicyResource]) -> Optional[str]:
    resources = list(resources)
    for resource in resources:
        if resource.resource_type == ENVIRONMENT:
            role = _known(lambda r=resource: get(r.props, "role"))
            if isinstance(role, str) and role:
                return role
    for resource in resources:
        return role_from_stack(stack_of(resource.urn))
    return None


def _known(read: Callable[[], Any]) -> Any:
    """A value that is still unknown in preview reads as None: the update checks it once known."""
    try:
        return read()
    except UnknownValueError:
        return None


def _each(resources: Iterable[PolicyResource], types: Iterable[str]) -> Iterator[PolicyResource]:
    wanted = set(types)
    return (r for r in resources if r.resource_type in wanted)


def _checked(resources: Iterable[PolicyResource], types: Iterable[str],
             check: Callable[[PolicyResource], Optional[str]], report: ResourceReport) -> None:
    """Run `check` on each resource of `types`; one with unknown values is skipped, not the whole rule."""
    for resource in _each(resources, types):
        try:
            problem = check(resource)
        except UnknownValueError:
            continue
        if problem:
            report(f"{resource.name}: {problem}", resource.urn)


# --- resource rules -----------------------------------------------------------------------------

def webapp_https_only(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type in WEB_APPS and get(args.props, "httpsOnly") is not True:
        report("httpsOnly is not true: the site would also answer over plain http. Set https_only=True.")


def webapp_tls_1_2(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type not in WEB_APPS:
        return
    version = get(args.props, "siteConfig.minTlsVersion")
    if version not in ("1.2", "1.3"):
        report(f"siteConfig.minTlsVersion is {version or 'unset'}; it must be 1.2 or 1.3 (set min_tls_version='1.2').")


def webapp_no_plain_ftp(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type not in WEB_APPS:
        return
    state = get(args.props, "siteConfig.ftpsState")
    if state not in ("Disabled", "FtpsOnly"):
        report(f"siteConfig.ftpsState is {state or 'unset (AllAllowed)'}: deployment credentials would cross the "
               "network in clear text. Set ftps_state='Disabled' (releases go through the package, not FTP).")


def _literal_secrets(settings: Iterable[tuple[str, Any]], is_reference: Callable[[str], bool]) -> list[str]:
    return sorted(name for name, value in settings
                  if SECRET_NAME.search(str(name)) and isinstance(value, str) and value and not is_reference(value))


def app_settings_no_literal_secrets(args: ResourceValidationArgs, report: ResourceReport) -> None:
    props = args.props
    if args.resource_type in WEB_APPS or args.resource_type in APP_SETTINGS:
        if args.resource_type in WEB_APPS:
            pairs = [(get(p, "name", ""), get(p, "value")) for p in items(get(props, "siteConfig.appSettings"))]
        else:
            pairs = list((get(props, "properties") or {}).items())
        names = _literal_secrets(pairs, lambda v: v.strip().startswith(KEY_VAULT_REFERENCE))
        if names:
            report(f"app settings {', '.join(names)} hold a literal value; anyone who can read the app's "
                   "configuration reads the secret. Store it in Key Vault and set the setting to "
                   "@Microsoft.KeyVault(SecretUri=...).")
    elif args.resource_type == BEANSTALK_ENVIRONMENT:
        pairs = [(get(s, "name", ""), get(s, "value")) for s in items(get(props, "settings"))
                 if get(s, "namespace") == "aws:elasticbeanstalk:application:environment"]
        names = _literal_secrets(pairs, lambda v: v.startswith(AWS_SECRET_REFERENCE))
        if names:
            report(f"environment properties {', '.join(names)} hold a literal value, visible to anyone who can "
                   "describe the environment. Keep it in Secrets Manager or SSM SecureString and reference it "
                   "(aws:elasticbeanstalk:application:environmentsecrets) or read it through the instance role.")


def rds_encrypted_private(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    if get(args.props, "storageEncrypted") is not True:
        report("storageEncrypted is not true: the database and its snapshots would be stored unencrypted.")
    if get(args.props, "publiclyAccessible") is True:
        report("publiclyAccessible is true: the database would get a public address. Only the app's instances "
               "may reach it.")


def beanstalk_zero_downtime(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type != BEANSTALK_ENVIRONMENT:
        return
    settings = {(get(s, "namespace"), get(s, "name")): get(s, "value") for s in items(get(args.props, "settings"))}
    policy = settings.get(("aws:elasticbeanstalk:command", "DeploymentPolicy"))
    if policy not in ("Immutable", "TrafficSplitting"):
        report(f"DeploymentPolicy is {policy or 'unset (AllAtOnce)'}: a release would take instances out of "
               "service. Use Immutable or TrafficSplitting.")
    health = settings.get(("aws:elasticbeanstalk:healthreporting:system", "SystemType"))
    if health != "enhanced":
        report(f"health reporting is {health or 'unset (basic)'}: a failed release is only rolled back on "
               "enhanced health. Set aws:elasticbeanstalk:healthreporting:system SystemType=enhanced.")


def ssh_host_key_pinned(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type not in REMOTE_COMMANDS:
        return
    for path in ("connection", "connection.proxy"):
        connection = get(args.props, path)
        if isinstance(connection, Mapping) and not str(get(connection, "hostKey", "")).strip():
            report(f"{path}.hostKey is not set: the command would trust whichever server answers at that "
                   "address. Pin the server's host key (siteline:hosting.vps.hostKey).")


def real_mail_only_on_live(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type != ENVIRONMENT:
        return
    role = get(args.props, "role")
    if role != "live" and get(args.props, "smtpMode") == "deliver":
        opted_in = get(args.props, "allowRealMail") is True
        report(f"the {role} role delivers mail to real recipients"
               + (" (smtp.allowRealMail lets the program accept this, the organisation's policy does not)"
                  if opted_in else "") +
               ". Use smtp.mode sink or allowlist outside live. To allow it for one stack, run that stack "
               "with a policy config lowering real-mail-only-on-live to advisory.")


def live_requires_verified_release(args: ResourceValidationArgs, report: ResourceReport) -> None:
    if args.resource_type != ENVIRONMENT:
        return
    if get(args.props, "role") == "live" and get(args.props, "requireVerified") is not True:
        report("the live role does not require a verified release: an untested package could reach the public "
               "site. Set siteline:requireVerified true and siteline:promoteFrom to the test stack.")
    if get(args.props, "role") == "live" and not get(args.props, "promoteFrom"):
        report("the live role has no promoteFrom: live must take its release from the stack that verified it.")


# --- stack rules (they know the role) -----------------------------------------------------------

def _live(args: StackValidationArgs) -> bool:
    return stack_role(args.resources) == "live"


def live_database_safeguards(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _live(args):
        return
    minimum = int(args.get_config().get("minimumBackupDays", LIVE_BACKUP_DAYS))

    def azure(resource: PolicyResource) -> Optional[str]:
        days = get(resource.props, "backup.backupRetentionDays", 7)
        return f"keeps backups {days} days on live; live keeps at least {minimum}." if days < minimum else None

    def aws(resource: PolicyResource) -> Optional[str]:
        problems = []
        days = get(resource.props, "backupRetentionPeriod", 0)
        if days < minimum:
            problems.append(f"keeps backups {days} days (at least {minimum} on live)")
        if get(resource.props, "deletionProtection") is not True:
            problems.append("has no deletionProtection")
        if get(resource.props, "skipFinalSnapshot") is True:
            problems.append("skips the final snapshot on delete")
        return "; ".join(problems) + "." if problems else None

    _checked(args.resources, [AZURE_POSTGRES], azure, report)
    _checked(args.resources, [RDS_INSTANCE], aws, report)


def live_stateful_resources_protected(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _live(args):
        return
    _checked(args.resources, [AZURE_POSTGRES, RDS_INSTANCE, KEY_VAULT, APP_SERVICE_PLAN],
             lambda r: None if r.opts.protect else "is not protected on live; set ResourceOptions(protect=True) "
             "so pulumi destroy or a replacement cannot delete it.", report)


def live_key_vault_purge_protection(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _live(args):
        return
    _checked(args.resources, [KEY_VAULT],
             lambda r: None if get(r.props, "properties.enablePurgeProtection") is True
             else "has no purge protection on live: a deleted secret could be purged for good.", report)


def live_database_high_availability(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _live(args):
        return
    _checked(args.resources, [AZURE_POSTGRES],
             lambda r: None if get(r.props, "highAvailability.mode", "Disabled") != "Disabled"
             else "runs without high availability on live (set database.highAvailability).", report)
    _checked(args.resources, [RDS_INSTANCE],
             lambda r: None if get(r.props, "multiAz") is True
             else "is single-AZ on live (set database.highAvailability).", report)


def live_azure_delete_lock(args: StackValidationArgs, report: ReportViolation) -> None:
    for lock in _each(args.resources, LOCKS):
        if _known(lambda r=lock: get(r.props, "level")) == "ReadOnly":
            report(f"{lock.name}: a ReadOnly lock blocks slot swaps and Pulumi's own updates; use CanNotDelete.",
                   lock.urn)
    if not _live(args):
        return
    groups = list(_each(args.resources, [RESOURCE_GROUP]))
    locked = [lock for lock in _each(args.resources, LOCKS)
              if _known(lambda r=lock: get(r.props, "level")) == "CanNotDelete"]
    if groups and not locked:
        report("live's resource group has no CanNotDelete management lock: one mistaken delete in the portal or "
               "CLI removes the whole site.", groups[0].urn)


def postgres_not_public(args: StackValidationArgs, report: ReportViolation) -> None:
    def open_to_internet(rule: PolicyResource) -> bool:
        try:
            start = ipaddress.IPv4Address(str(get(rule.props, "startIpAddress")))
            end = ipaddress.IPv4Address(str(get(rule.props, "endIpAddress")))
        except ValueError:
            return False
        return int(end) - int(start) + 1 > MAX_FIREWALL_ADDRESSES

    public = {r.urn for r in _each(args.resources, [AZURE_POSTGRES])
              if _known(lambda r=r: get(r.props, "network.publicNetworkAccess")) == "Enabled"}
    for rule in _each(args.resources, [AZURE_FIREWALL_RULE]):
        server = {d.urn for d in rule.dependencies} & public or (public if len(public) == 1 else set())
        if server and _known(lambda r=rule: open_to_internet(r)):
            report(f"{rule.name}: opens the PostgreSQL server to "
                   f"{get(rule.props, 'startIpAddress')}-{get(rule.props, 'endIpAddress')}; allow only the "
                   "app's addresses, or disable public network access.", rule.urn)


def s3_public_access_blocked(args: StackValidationArgs, report: ReportViolation) -> None:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    blocks = list(_each(args.resources, [S3_PUBLIC_ACCESS_BLOCK]))

    def covers(block: PolicyResource, bucket: PolicyResource) -> bool:
        target = _known(lambda: get(block.props, "bucket"))
        names = {_known(lambda: get(bucket.props, "bucket")), _known(lambda: get(bucket.props, "id"))} - {None}
        return bucket in block.dependencies or (target is not None and target in names)

    def check(bucket: PolicyResource) -> Optional[str]:
        mine = [b for b in blocks if covers(b, bucket)]
        if not mine:
            return "has no BucketPublicAccessBlock: nothing stops a public ACL or policy on the release bundles."
        missing = [f for f in flags if not any(get(b.props, f) is True for b in mine)]
        return f"public access block leaves {', '.join(missing)} off." if missing else None

    _checked(args.resources, S3_BUCKETS, check, report)


def release_sha256_pinned(args: StackValidationArgs, report: ReportViolation) -> None:
    def environment(resource: PolicyResource) -> Optional[str]:
        release = get(resource.props, "release")
        if not isinstance(release, Mapping):
            return None  # inputs only (not yet an output): the commands below carry it
        sha = get(release, "sha256", "")
        return None if SHA256.match(str(sha)) else f"deploys release {get(release, 'version')} without a sha256."

    def command(resource: PolicyResource) -> Optional[str]:
        env = get(resource.props, "environment") or {}
        if isinstance(env, Mapping) and "RELEASE_PACKAGE" in env:  # the local target
            sha = env.get("RELEASE_SHA256", "")
            return None if SHA256.match(str(sha)) else ("installs a release package without RELEASE_SHA256: the "
                                                        "package on the server could differ from the one tested.")
        # The vps target: `[sudo -n] env K=V … bash -c SCRIPT vps-release.sh deploy`, its parameters on
        # the command line (a stock sshd drops `environment`); the script refuses a package whose sha256
        # differs from SHA256, so SHA256 must be there and be a sha256.
        create = get(resource.props, "create")
        if not isinstance(create, str) or "vps-release.sh" not in create:
            return None
        try:
            words = shlex.split(create)
        except ValueError:
            return "has a create command that does not parse as a shell command line; its release cannot be checked."
        if words[-2:] != ["vps-release.sh", "deploy"] or "env" not in words[:3] or "bash" not in words:
            return None
        params = dict(word.split("=", 1) for word in words[words.index("env") + 1:words.index("bash")] if "=" in word)
        return None if SHA256.match(params.get("SHA256", "")) else (
            "deploys a release package without SHA256= on its vps-release.sh command: the package on the server "
            "could differ from the one tested.")

    _checked(args.resources, [ENVIRONMENT], environment, report)
    _checked(args.resources, RELEASE_COMMANDS, command, report)


MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[Policy] = [
    ResourceValidationPolicy("webapp-https-only", "Web apps and slots answer over HTTPS only.",
                             webapp_https_only, MANDATORY),
    ResourceValidationPolicy("webapp-tls-1-2", "Web apps and slots require TLS 1.2 or newer.",
                             webapp_tls_1_2, MANDATORY),
    ResourceValidationPolicy("webapp-no-plain-ftp", "Web apps and slots do not accept plain FTP.",
                             webapp_no_plain_ftp, MANDATORY),
    ResourceValidationPolicy("app-settings-no-literal-secrets",
                             "App settings and environment properties reference secrets, never hold them.",
                             app_settings_no_literal_secrets, MANDATORY),
    ResourceValidationPolicy("rds-encrypted-private", "RDS databases are encrypted and not publicly accessible.",
                             rds_encrypted_private, MANDATORY),
    ResourceValidationPolicy("beanstalk-zero-downtime-deploys",
                             "Elastic Beanstalk deploys Immutable or TrafficSplitting, with enhanced health.",
                             beanstalk_zero_downtime, MANDATORY),
    ResourceValidationPolicy("ssh-host-key-pinned", "Remote commands pin the server's SSH host key.",
                             ssh_host_key_pinned, MANDATORY),
    ResourceValidationPolicy("real-mail-only-on-live", "Only the live role delivers mail to real recipients.",
                             real_mail_only_on_live, MANDATORY),
    ResourceValidationPolicy("live-requires-verified-release",
                             "Live deploys only the release its upstream verified.",
                             live_requires_verified_release, MANDATORY),
    StackValidationPolicy("live-database-safeguards",
                          "Live databases keep long backups, deletion protection and a final snapshot.",
                          live_database_safeguards, MANDATORY,
                          config_schema=PolicyConfigSchema(
                              {"minimumBackupDays": {"type": "integer", "minimum": 1, "maximum": 35,
                                                     "default": LIVE_BACKUP_DAYS}})),
    StackValidationPolicy("live-stateful-resources-protected",
                          "Live databases, vaults and plans carry protect=True.",
                          live_stateful_resources_protected, MANDATORY),
    StackValidationPolicy("live-key-vault-purge-protection", "Live key vaults have purge protection.",
                          live_key_vault_purge_protection, MANDATORY),
    StackValidationPolicy("live-database-high-availability", "Live databases are highly available.",
                          live_database_high_availability, ADVISORY),
    StackValidationPolicy("live-azure-delete-lock",
                          "Live resource groups carry a CanNotDelete lock; no ReadOnly locks anywhere.",
                          live_azure_delete_lock, MANDATORY),
    StackValidationPolicy("postgres-not-public", "PostgreSQL servers are not open to the internet.",
                          postgres_not_public, MANDATORY),
    StackValidationPolicy("s3-public-access-blocked", "Every S3 bucket blocks public access.",
                          s3_public_access_blocked, MANDATORY),
    StackValidationPolicy("release-sha256-pinned", "Every deployed release carries its sha256.",
                          release_sha256_pinned, MANDATORY),
]
