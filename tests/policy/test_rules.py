"""Each rule of the pack, called directly: one compliant case that passes and one breach that fails."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, PolicyResource
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.targets import vps
from policy import rules
from tests.policy import environment, reported, resource, resource_args, stack_args

SHA = "b" * 64
KV_REF = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/crm-api-key/)"


def web_app(**site_config: Any) -> dict[str, Any]:
    config = {"minTlsVersion": "1.2", "ftpsState": "Disabled", "appSettings": [], **site_config}
    return {"httpsOnly": True, "siteConfig": config}


# --- resource rules -----------------------------------------------------------------------------

@pytest.mark.parametrize("type_token", rules.WEB_APPS)
def test_webapp_https_only(type_token: str) -> None:
    assert reported(rules.webapp_https_only, resource_args(type_token, web_app())) == []
    assert reported(rules.webapp_https_only, resource_args(type_token, {**web_app(), "httpsOnly": False}))
    assert reported(rules.webapp_https_only, resource_args(type_token, {"siteConfig": {}})), "unset is a breach"


def test_webapp_tls_1_2() -> None:
    assert reported(rules.webapp_tls_1_2, resource_args("azure-native:web:WebApp", web_app())) == []
    assert reported(rules.webapp_tls_1_2, resource_args("azure-native:web:WebApp", web_app(minTlsVersion="1.3"))) == []
    [message] = reported(rules.webapp_tls_1_2, resource_args("azure-native:web:WebApp", web_app(minTlsVersion="1.0")))
    assert "1.0" in message


def test_webapp_no_plain_ftp() -> None:
    for state in ("Disabled", "FtpsOnly"):
        assert reported(rules.webapp_no_plain_ftp,
                        resource_args("azure-native:web:WebAppSlot", web_app(ftpsState=state))) == []
    slot = "azure-native:web:WebAppSlot"
    assert reported(rules.webapp_no_plain_ftp, resource_args(slot, web_app(ftpsState="AllAllowed")))
    assert reported(rules.webapp_no_plain_ftp, resource_args("azure-native:web:WebAppSlot", {"httpsOnly": True}))


def test_app_settings_on_a_web_app_must_reference_key_vault() -> None:
    good = web_app(appSettings=[{"name": "CRM_API_KEY", "value": KV_REF}, {"name": "KEY_VAULT_URI", "value": "https://kv"},
                                {"name": "CRM_MODE", "value": "live"}, {"name": "DATABASE_URL", "value": KV_REF}])
    assert reported(rules.app_settings_no_literal_secrets, resource_args("azure-native:web:WebApp", good)) == []
    bad = web_app(appSettings=[{"name": "ADMIN_TOKEN", "value": "hunter2"}, {"name": "CRM_MODE", "value": "live"},
                               {"name": "DATABASE_URL", "value": "postgresql://u:p@h/db"}])
    [message] = reported(rules.app_settings_no_literal_secrets, resource_args("azure-native:web:WebApp", bad))
    assert "ADMIN_TOKEN" in message and "DATABASE_URL" in message and "CRM_MODE" not in message
    assert "hunter2" not in message, "a violation message must not repeat the secret"


def test_app_settings_resource_and_slot() -> None:
    for type_token in rules.APP_SETTINGS:
        ok = {"properties": {"SMTP_PASSWORD": KV_REF, "SMTP_HOST": "smtp.example.com"}}
        assert reported(rules.app_settings_no_literal_secrets, resource_args(type_token, ok)) == []
        bad = {"properties": {"SMTP_PASSWORD": "literal", "SMTP_HOST": "smtp.example.com"}}
        assert "SMTP_PASSWORD" in reported(rules.app_settings_no_literal_secrets, resource_args(type_token, bad))[0]


def test_beanstalk_environment_properties_hold_no_literal_secret() -> None:
    env = "aws:elasticbeanstalk:application:environment"
    good = {"settings": [{"namespace": env, "name": "CRM_MODE", "value": "live"},
                         {"namespace": "aws:elasticbeanstalk:application:environmentsecrets", "name": "CRM_API_KEY",
                          "value": "arn:aws:secretsmanager:eu-west-1:1:secret:crm"}]}
    assert reported(rules.app_settings_no_literal_secrets, resource_args(rules.BEANSTALK_ENVIRONMENT, good)) == []
    bad = {"settings": [{"namespace": env, "name": "CRM_API_KEY", "value": "sk_live_123"}]}
    assert reported(rules.app_settings_no_literal_secrets, resource_args(rules.BEANSTALK_ENVIRONMENT, bad))


def test_secret_name_pattern() -> None:
    for name in ("CRM_API_KEY", "ADMIN_TOKEN", "SMTP_PASSWORD", "DATABASE_URL", "AZURE_CLIENT_SECRET", "SECRET",
                 "STORAGE_CONNECTION_STRING"):
        assert rules.SECRET_NAME.search(name), name
    for name in ("KEY_VAULT_URI", "CRM_API_URL", "SMTP_USERNAME", "TOKEN_TTL", "WEBSITE_RUN_FROM_PACKAGE"):
        assert not rules.SECRET_NAME.search(name), name


def test_rds_encrypted_private() -> None:
    ok = {"storageEncrypted": True, "publiclyAccessible": False}
    assert reported(rules.rds_encrypted_private, resource_args(rules.RDS_INSTANCE, ok)) == []
    breach = resource_args(rules.RDS_INSTANCE, {"publiclyAccessible": True})
    assert len(reported(rules.rds_encrypted_private, breach)) == 2


def test_beanstalk_zero_downtime() -> None:
    def settings(policy: str, health: str) -> dict[str, Any]:
        return {"settings": [
            {"namespace": "aws:elasticbeanstalk:command", "name": "DeploymentPolicy", "value": policy},
            {"namespace": "aws:elasticbeanstalk:healthreporting:system", "name": "SystemType", "value": health}]}

    for policy in ("Immutable", "TrafficSplitting"):
        assert reported(rules.beanstalk_zero_downtime, resource_args(rules.BEANSTALK_ENVIRONMENT,
                                                                     settings(policy, "enhanced"))) == []
    [message] = reported(rules.beanstalk_zero_downtime, resource_args(rules.BEANSTALK_ENVIRONMENT,
                                                                      settings("AllAtOnce", "enhanced")))
    assert "AllAtOnce" in message
    basic_health = resource_args(rules.BEANSTALK_ENVIRONMENT, settings("Immutable", "basic"))
    assert reported(rules.beanstalk_zero_downtime, basic_health)


@pytest.mark.parametrize("type_token", rules.REMOTE_COMMANDS)
def test_ssh_host_key_pinned(type_token: str) -> None:
    pinned = {"connection": {"host": "203.0.113.7", "user": "siteline", "hostKey": "ssh-ed25519 AAAAC3Nza"}}
    assert reported(rules.ssh_host_key_pinned, resource_args(type_token, pinned)) == []
    assert reported(rules.ssh_host_key_pinned, resource_args(type_token, {"connection": {"host": "203.0.113.7"}}))
    via_proxy = {"connection": {**pinned["connection"], "proxy": {"host": "bastion"}}}
    [message] = reported(rules.ssh_host_key_pinned, resource_args(type_token, via_proxy))
    assert "proxy" in message


def test_real_mail_only_on_live() -> None:
    live = environment("live").props
    assert reported(rules.real_mail_only_on_live, resource_args(rules.ENVIRONMENT, live)) == []
    assert reported(rules.real_mail_only_on_live, resource_args(rules.ENVIRONMENT, environment("test").props)) == []
    breach = environment("test", smtpMode="deliver").props
    assert reported(rules.real_mail_only_on_live, resource_args(rules.ENVIRONMENT, breach))
    # The program's escape hatch does not bind the organisation's policy.
    opted_in = environment("dev", smtpMode="deliver", allowRealMail=True).props
    [message] = reported(rules.real_mail_only_on_live, resource_args(rules.ENVIRONMENT, opted_in))
    assert "allowRealMail" in message


def test_live_requires_verified_release() -> None:
    live = environment("live", promoteFrom="organization/siteline/test").props
    assert reported(rules.live_requires_verified_release, resource_args(rules.ENVIRONMENT, live)) == []
    assert reported(rules.live_requires_verified_release,
                    resource_args(rules.ENVIRONMENT, environment("test", requireVerified=False).props)) == []
    unverified = {**live, "requireVerified": False}
    assert reported(rules.live_requires_verified_release, resource_args(rules.ENVIRONMENT, unverified))
    assert reported(rules.live_requires_verified_release, resource_args(rules.ENVIRONMENT, {**live, "promoteFrom": ""}))


# --- stack rules --------------------------------------------------------------------------------

def azure_server(days: int = 35, ha: str = "ZoneRedundant", protect: bool = True, public: str = "Disabled",
                 stack: str = "live") -> Any:
    return resource(rules.AZURE_POSTGRES, {"backup": {"backupRetentionDays": days}, "highAvailability": {"mode": ha},
                                           "network": {"publicNetworkAccess": public}}, stack=stack, protect=protect)


def rds(stack: str = "live", protect: bool = True, **props: Any) -> Any:
    values = {"backupRetentionPeriod": 35, "deletionProtection": True, "skipFinalSnapshot": False, "multiAz": True,
              **props}
    return resource(rules.RDS_INSTANCE, values, stack=stack, protect=protect)


def test_live_database_safeguards_azure() -> None:
    assert reported(rules.live_database_safeguards, stack_args([environment("live"), azure_server()])) == []
    [message] = reported(rules.live_database_safeguards, stack_args([environment("live"), azure_server(days=7)]))
    assert "7 days" in message
    # Not live: short backups are the test role's business.
    assert reported(rules.live_database_safeguards, stack_args([environment("test"), azure_server(days=7)])) == []


def test_live_database_safeguards_aws_and_config() -> None:
    assert reported(rules.live_database_safeguards, stack_args([environment("live"), rds()])) == []
    [message] = reported(rules.live_database_safeguards,
                         stack_args([environment("live"), rds(deletionProtection=False, skipFinalSnapshot=True)]))
    assert "deletionProtection" in message and "final snapshot" in message
    fourteen = stack_args([environment("live"), rds(backupRetentionPeriod=14)], config={"minimumBackupDays": 14})
    assert reported(rules.live_database_safeguards, fourteen) == []


def test_role_comes_from_the_environment_before_the_stack_name() -> None:
    # A stack named "prod-eu" is live because its Environment says so.
    server = azure_server(days=7, stack="prod-eu")
    assert reported(rules.live_database_safeguards, stack_args([environment("live", stack="prod-eu"), server]))
    # Without the component, the stack name decides.
    assert reported(rules.live_database_safeguards, stack_args([azure_server(days=7, stack="production")]))
    assert reported(rules.live_database_safeguards, stack_args([azure_server(days=7, stack="staging")])) == []


def test_live_stateful_resources_protected() -> None:
    vault = resource(rules.KEY_VAULT, {"properties": {"enablePurgeProtection": True}}, stack="live", protect=True)
    protected = stack_args([environment("live"), azure_server(), vault])
    assert reported(rules.live_stateful_resources_protected, protected) == []
    [message] = reported(rules.live_stateful_resources_protected,
                         stack_args([environment("live"), azure_server(protect=False), vault]))
    assert "not protected" in message
    assert reported(rules.live_stateful_resources_protected,
                    stack_args([environment("dev"), rds(stack="dev", protect=False)])) == []


def test_live_key_vault_purge_protection() -> None:
    def vault(on: bool) -> Any:
        return resource(rules.KEY_VAULT, {"properties": {"enablePurgeProtection": on}}, stack="live", protect=True)

    assert reported(rules.live_key_vault_purge_protection, stack_args([environment("live"), vault(True)])) == []
    assert reported(rules.live_key_vault_purge_protection, stack_args([environment("live"), vault(False)]))
    assert reported(rules.live_key_vault_purge_protection, stack_args([environment("test"), vault(False)])) == []


def test_live_database_high_availability_is_advisory() -> None:
    assert reported(rules.live_database_high_availability, stack_args([environment("live"), azure_server()])) == []
    assert reported(rules.live_database_high_availability,
                    stack_args([environment("live"), azure_server(ha="Disabled"), rds(multiAz=False)])) != []
    policy = next(p for p in rules.POLICIES if p.name == "live-database-high-availability")
    assert policy.enforcement_level == EnforcementLevel.ADVISORY


def test_live_azure_delete_lock() -> None:
    group = resource(rules.RESOURCE_GROUP, {"location": "westeurope"}, stack="live")
    lock = resource(rules.LOCKS[0], {"level": "CanNotDelete"}, stack="live")
    assert reported(rules.live_azure_delete_lock, stack_args([environment("live"), group, lock])) == []
    [missing] = reported(rules.live_azure_delete_lock, stack_args([environment("live"), group]))
    assert "CanNotDelete" in missing
    read_only = resource(rules.LOCKS[0], {"level": "ReadOnly"}, stack="test")
    assert "ReadOnly" in reported(rules.live_azure_delete_lock, stack_args([environment("test"), read_only]))[0]
    assert reported(rules.live_azure_delete_lock, stack_args([environment("test"), group])) == []


def test_postgres_not_public() -> None:
    server = azure_server(public="Enabled", stack="test")
    azure_services = resource(rules.AZURE_FIREWALL_RULE, {"startIpAddress": "0.0.0.0", "endIpAddress": "0.0.0.0"},
                              stack="test", dependencies=[server])
    office = resource(rules.AZURE_FIREWALL_RULE, {"startIpAddress": "198.51.100.0", "endIpAddress": "198.51.100.255"},
                      stack="test", dependencies=[server])
    assert reported(rules.postgres_not_public, stack_args([server, azure_services, office])) == []
    world = resource(rules.AZURE_FIREWALL_RULE, {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"},
                     stack="test", name="everyone", dependencies=[server])
    [message] = reported(rules.postgres_not_public, stack_args([server, world]))
    assert "everyone" in message
    private = azure_server(public="Disabled", stack="test")
    leftover = resource(rules.AZURE_FIREWALL_RULE, {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"},
                        stack="test", dependencies=[private])
    assert reported(rules.postgres_not_public, stack_args([private, leftover])) == []


def test_s3_public_access_blocked() -> None:
    bucket = resource("aws:s3/bucket:Bucket", {"bucket": "siteline-live-bundles"}, stack="live")
    flags = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
             "restrictPublicBuckets": True}
    block = resource(rules.S3_PUBLIC_ACCESS_BLOCK, {"bucket": "siteline-live-bundles", **flags}, stack="live")
    assert reported(rules.s3_public_access_blocked, stack_args([bucket, block])) == []
    by_dependency = resource(rules.S3_PUBLIC_ACCESS_BLOCK, flags, stack="live", dependencies=[bucket])
    assert reported(rules.s3_public_access_blocked, stack_args([bucket, by_dependency])) == []
    assert "no BucketPublicAccessBlock" in reported(rules.s3_public_access_blocked, stack_args([bucket]))[0]
    partial = resource(rules.S3_PUBLIC_ACCESS_BLOCK, {**flags, "bucket": "siteline-live-bundles",
                                                      "restrictPublicBuckets": False}, stack="live")
    assert "restrictPublicBuckets" in reported(rules.s3_public_access_blocked, stack_args([bucket, partial]))[0]


def test_release_sha256_pinned() -> None:
    release = {"version": "1.4.0", "package": "dist/site-1.4.0.zip", "sha256": SHA}
    deploy = resource("command:local:Command", {"environment": {"RELEASE_PACKAGE": "/x.zip", "RELEASE_SHA256": SHA}})
    assert reported(rules.release_sha256_pinned, stack_args([environment("dev", release=release), deploy])) == []
    unpinned = resource("command:remote:Command", {"environment": {"RELEASE_PACKAGE": "/x.zip", "RELEASE_SHA256": ""}})
    assert "RELEASE_SHA256" in reported(rules.release_sha256_pinned, stack_args([environment("dev"), unpinned]))[0]
    no_sha = environment("live", release={**release, "sha256": ""})
    assert "without a sha256" in reported(rules.release_sha256_pinned, stack_args([no_sha]))[0]


def vps_release(sha256: str | None, sudo: bool = False) -> PolicyResource:
    """The vps target's release command as vps.py writes it: parameters on the command line."""
    params = {"BASE": "/srv/siteline", "STAGED": f"/srv/siteline/staging/{SHA}.zip", "VERSION": "1.4.0"}
    if sha256 is not None:
        params["SHA256"] = sha256
    create = vps.command_line("vps-release.sh", "deploy", params, sudo=sudo)
    delete = vps.command_line("vps-release.sh", "remove", {"BASE": "/srv/siteline"}, sudo=sudo)
    return resource("command:remote:Command", {"create": create, "delete": delete})


@pytest.mark.parametrize("sudo", [False, True])
def test_release_sha256_pinned_on_the_vps_release_command(sudo: bool) -> None:
    assert reported(rules.release_sha256_pinned, stack_args([environment("live"), vps_release(SHA, sudo)])) == []
    for sha in (None, "", "not-a-sha"):
        [message] = reported(rules.release_sha256_pinned, stack_args([environment("live"), vps_release(sha, sudo)]))
        assert "SHA256=" in message and "vps-release.sh" in message
    # Other remote commands (the bootstrap, the mail sink) carry no release.
    bootstrap = resource("command:remote:Command",
                         {"create": vps.command_line("vps-bootstrap.sh", "up", {"BASE": "/srv/siteline"}, sudo=sudo)})
    assert reported(rules.release_sha256_pinned, stack_args([environment("live"), bootstrap])) == []


def test_every_rule_is_in_the_pack_and_breaches_that_hurt_are_mandatory() -> None:
    names = [p.name for p in rules.POLICIES]
    assert len(names) == len(set(names)) >= 10
    advisory = {p.name for p in rules.POLICIES if p.enforcement_level != EnforcementLevel.MANDATORY}
    assert advisory == {"live-database-high-availability"}


def test_unknown_values_skip_one_resource_not_the_rule() -> None:
    # In preview the engine marks values known only after apply with sentinels; reading one raises.
    pending_props = unknown_checking_proxy({"properties": UNKNOWN_STRING_VALUE})
    pending = resource(rules.KEY_VAULT, pending_props, stack="live", protect=True)
    breach = resource(rules.KEY_VAULT, {"properties": {"enablePurgeProtection": False}}, stack="live", protect=True)
    messages = reported(rules.live_key_vault_purge_protection, stack_args([environment("live"), pending, breach]))
    assert len(messages) == 1
