"""The azure target under mocks: every role's resources, the inputs that carry each rule, and the options."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.settings import StackConfig
from components.targets import _azure_rules as rules
from components.targets import azure
from tests.computed.azure_native import SUBSCRIPTION, TENANT, _guid
from tests.computed.random import password as random_password
from tests.conftest import MARKER_VALUES, MARKERS, build_package
from tests.harness import REPO, Evaluation, Registered, evaluate, is_secret, plain_text

AZ = "azure-native:"
SECRET_ENV = ("ADMIN_TOKEN", "CRM_API_KEY", "SMTP_PASSWORD", "DATABASE_URL")
DEV_ON_AZURE = {"siteline:target": "azure", "siteline:hosting.azure": {"location": "westeurope"},
                "siteline:smtp.host": "smtp.example.com"}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_package("1.0.0", tmp_path_factory.mktemp("dist"))


def _upstream(stack: str, release: dict[str, str]) -> dict[str, dict[str, Any]]:
    if stack == "test":
        return {"organization/siteline/dev": {"release": release, "contract": 1}}
    return {"organization/siteline/test": {"release": release, "verifiedRelease": release, "contract": 1}}


def _evaluate(role: str, release: dict[str, str], dev_package: dict[str, str], **extra: Any) -> Evaluation:
    if role == "dev":
        return evaluate("dev", overrides={**DEV_ON_AZURE, **extra})
    return evaluate(role, overrides=extra or None, secrets=MARKERS, upstream=_upstream(role, release))


@pytest.fixture(scope="module", params=["dev", "test", "live"])
def stack(request: pytest.FixtureRequest, release: dict[str, str], dev_package: dict[str, str]) -> Evaluation:
    evaluation = _evaluate(request.param, release, dev_package)
    assert evaluation.error is None, f"{request.param} failed to evaluate: {evaluation.error}"
    return evaluation


@pytest.fixture(scope="module")
def live(release: dict[str, str], dev_package: dict[str, str]) -> Evaluation:
    evaluation = _evaluate("live", release, dev_package)
    assert evaluation.error is None, evaluation.error
    return evaluation


def settings_of(resource: Registered) -> dict[str, Any]:
    return {pair["name"]: pair["value"] for pair in resource.plain_inputs["siteConfig"].get("appSettings", [])}


def arm_id(stack: Evaluation, path: str) -> str:
    """The ARM id of a resource in the stack's resource group: what Azure answers, and what dependents must name."""
    group = stack.one(AZ + "resources:ResourceGroup").plain_inputs["resourceGroupName"]
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{path}"


def site_identity(stack: Evaluation) -> str:
    return arm_id(stack, f"Microsoft.ManagedIdentity/userAssignedIdentities/siteline-{stack.stack}-site")


def test_declares_the_whole_environment(stack: Evaluation) -> None:
    types = {r.type for r in stack.resources}
    for needed in ("resources:ResourceGroup", "web:AppServicePlan", "web:WebApp", "web:WebAppSlot",
                   "web:WebAppSlotConfigurationNames", "storage:StorageAccount", "storage:BlobContainer",
                   "storage:Blob", "keyvault:Vault", "keyvault:Secret", "authorization:RoleAssignment",
                   "dbforpostgresql:Server", "dbforpostgresql:Database", "network:VirtualNetwork",
                   "privatedns:PrivateZone"):
        assert AZ + needed in types, needed
    target = stack.one("siteline:targets:Azure")
    assert all(r.parent for r in stack.resources if r.type.startswith(AZ))
    assert target.urn in {r.parent for r in stack.resources if r.type.startswith(AZ)}


def test_both_slots_are_locked_down(stack: Evaluation) -> None:
    identity = site_identity(stack)
    for site in (stack.one(AZ + "web:WebApp"), stack.one(AZ + "web:WebAppSlot")):
        inputs, config = site.plain_inputs, site.plain_inputs["siteConfig"]
        assert inputs["httpsOnly"] is True
        # One user-assigned identity on both slots, the one Key Vault references resolve with.
        assert inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [identity]}
        assert inputs["keyVaultReferenceIdentity"] == identity
        assert (config["minTlsVersion"], config["ftpsState"], config["alwaysOn"]) == ("1.2", "Disabled", True)
        assert config["healthCheckPath"] == "/healthz" and config["linuxFxVersion"] == "PYTHON|3.11"
        assert inputs["virtualNetworkSubnetId"].endswith("/subnets/app")


def test_production_takes_settings_only_from_swaps(stack: Evaluation) -> None:
    production = stack.one(AZ + "web:WebApp")
    assert "appSettings" not in production.plain_inputs["siteConfig"]
    assert "appCommandLine" not in production.plain_inputs["siteConfig"]
    assert {"siteConfig.appSettings", "siteConfig.appCommandLine"} <= set(production.ignore_changes)
    assert stack.one(AZ + "web:WebAppSlot").ignore_changes == []


def test_staging_runs_the_package_through_its_identity(stack: Evaluation) -> None:
    slot = stack.one(AZ + "web:WebAppSlot")
    assert slot.plain_inputs["slot"] == "staging"
    values = settings_of(slot)
    blob = stack.one(AZ + "storage:Blob").plain_inputs
    assert values["WEBSITE_RUN_FROM_PACKAGE"].endswith(f"/releases/{blob['blobName']}")
    assert "?" not in values["WEBSITE_RUN_FROM_PACKAGE"], "a SAS token would be baked into the config"
    assert values["WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID"] == site_identity(stack)
    # The package carries its dependencies: nothing is installed at start, on any role, by default.
    assert slot.plain_inputs["siteConfig"]["appCommandLine"] == (
        "python3 migrate.py && python3 -m gunicorn --bind 0.0.0.0:${PORT} --workers 2 --graceful-timeout 10 "
        "app:application")
    account = stack.one(AZ + "storage:StorageAccount").plain_inputs
    assert account["allowBlobPublicAccess"] is False and account["minimumTlsVersion"] == "TLS1_2"
    assert stack.one(AZ + "storage:BlobContainer").plain_inputs["publicAccess"] == "None"
    assert stack.one(AZ + "storage:Blob").retain_on_delete


def test_secrets_reach_the_site_only_as_key_vault_references(stack: Evaluation) -> None:
    values = settings_of(stack.one(AZ + "web:WebAppSlot"))
    expected = SECRET_ENV if stack.stack != "dev" else ("DATABASE_URL",)
    for name in expected:
        assert values[name].startswith("@Microsoft.KeyVault(SecretUri=https://"), name
        assert "/secrets/" + name.lower().replace("_", "-") + "/" in values[name]
    assert not any("postgresql://" in str(v) for v in values.values())
    secrets = stack.of_type(AZ + "keyvault:Secret")
    names = sorted(s.plain_inputs["secretName"] for s in secrets)
    assert names == sorted(n.lower().replace("_", "-") for n in expected)
    for secret in secrets:
        properties = secret.inputs["properties"]
        assert is_secret(properties) or is_secret(properties["value"])
        assert "properties" in secret.additional_secret_outputs
    vault = stack.one(AZ + "keyvault:Vault").plain_inputs["properties"]
    assert vault["enableRbacAuthorization"] is True and vault["enableSoftDelete"] is True
    assert vault.get("enablePurgeProtection") is (True if stack.stack == "live" else None)


def test_the_site_identity_is_granted_package_and_secrets_before_either_slot_exists(stack: Evaluation) -> None:
    identity = stack.one(AZ + "managedidentity:UserAssignedIdentity")
    grants = stack.of_type(AZ + "authorization:RoleAssignment")
    roles = "/subscriptions/" + SUBSCRIPTION + "/providers/Microsoft.Authorization/roleDefinitions/"
    vault = stack.one(AZ + "keyvault:Vault").plain_inputs["vaultName"]
    account = stack.one(AZ + "storage:StorageAccount").plain_inputs["accountName"]
    assert sorted((g.plain_inputs["roleDefinitionId"], g.plain_inputs["scope"]) for g in grants) == sorted([
        (roles + azure.BLOB_DATA_READER,
         arm_id(stack, f"Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/releases")),
        (roles + azure.KEY_VAULT_SECRETS_USER, arm_id(stack, f"Microsoft.KeyVault/vaults/{vault}"))])
    assert {(g.plain_inputs["principalId"], g.plain_inputs["principalType"]) for g in grants} == {
        (_guid("principal-" + identity.name), "ServicePrincipal")}
    # The slots start only once they may read: App Service caches a Key Vault reference that failed.
    for site in (stack.one(AZ + "web:WebApp"), stack.one(AZ + "web:WebAppSlot")):
        assert {g.urn for g in grants} <= set(site.dependencies), site.name
    assert stack.one(AZ + "keyvault:Vault").plain_inputs["properties"]["tenantId"] == TENANT


def test_swap_is_keyed_to_the_release_and_runs_after_the_slot(stack: Evaluation) -> None:
    swap = stack.named("-swap")
    inputs = swap.plain_inputs
    sha = stack.plain_outputs["release"]["sha256"]
    assert inputs["triggers"][0] == sha and "delete" not in inputs
    # Relative to the project directory (the command's working directory): the same in every checkout.
    assert inputs["create"] == "bash components/scripts/azure-release.sh swap" and "dir" not in inputs
    assert inputs["environment"]["SUBSCRIPTION"] == SUBSCRIPTION
    assert inputs["environment"]["DEPLOYMENT"] == settings_of(stack.one(AZ + "web:WebAppSlot"))["SITELINE_DEPLOYMENT"]
    assert stack.one(AZ + "web:WebAppSlot").urn in swap.dependencies
    sticky = stack.one(AZ + "web:WebAppSlotConfigurationNames").plain_inputs["appSettingNames"]
    assert "SITELINE_SLOT" in sticky and "WEBSITE_RUN_FROM_PACKAGE" not in sticky


def test_database_is_private_and_sized_per_role(stack: Evaluation) -> None:
    server = stack.one(AZ + "dbforpostgresql:Server")
    inputs = server.plain_inputs
    live = stack.stack == "live"
    assert inputs["network"]["publicNetworkAccess"] == "Disabled"
    assert inputs["network"]["delegatedSubnetResourceId"].endswith("/subnets/database")
    assert stack.of_type(AZ + "dbforpostgresql:FirewallRule") == []
    assert inputs["backup"] == {"backupRetentionDays": 35.0 if live else 7.0, "geoRedundantBackup": "Disabled"}
    assert inputs["highAvailability"]["mode"] == ("ZoneRedundant" if live else "Disabled")
    assert inputs["sku"] == ({"name": "Standard_D2ds_v5", "tier": "GeneralPurpose"} if live
                             else {"name": "Standard_B1ms", "tier": "Burstable"})
    assert is_secret(server.inputs["administratorLoginPassword"])
    assert "administratorLoginPassword" in server.additional_secret_outputs


def test_live_protections_only_on_live(stack: Evaluation) -> None:
    live = stack.stack == "live"
    for kind in ("dbforpostgresql:Server", "keyvault:Vault", "web:AppServicePlan"):
        assert stack.one(AZ + kind).protect is live, kind
    locks = stack.of_type(AZ + "authorization:ManagementLockAtResourceGroupLevel")
    assert [lock.plain_inputs["level"] for lock in locks] == (["CanNotDelete"] if live else [])
    plan = stack.one(AZ + "web:AppServicePlan").plain_inputs["sku"]
    assert plan == ({"name": "P1v3", "capacity": 2.0} if live else {"name": "S1", "capacity": 1.0})


def test_live_serves_its_custom_domain_over_tls(live: Evaluation) -> None:
    assert live.one(AZ + "web:WebAppHostNameBinding").plain_inputs["hostName"] == "www.example.com"
    assert live.one(AZ + "web:Certificate").plain_inputs["canonicalName"] == "www.example.com"
    tls = live.named("-tls").plain_inputs
    assert tls["create"] == "bash components/scripts/azure-release.sh bind-tls"
    assert tls["environment"]["SUBSCRIPTION"] == SUBSCRIPTION
    assert live.plain_outputs["url"] == "https://www.example.com"


def test_outputs_follow_the_contract(stack: Evaluation) -> None:
    out = stack.plain_outputs
    server = stack.one(AZ + "dbforpostgresql:Server")
    host = f"{server.plain_inputs['serverName']}.postgres.database.azure.com"
    server_id = arm_id(stack, f"Microsoft.DBforPostgreSQL/flexibleServers/{server.plain_inputs['serverName']}")
    assert out["database"] == {"engine": "postgres", "host": host, "port": 5432, "name": "site", "id": server_id,
                               "location": "westeurope"}
    assert (out["smtp"]["host"], out["smtp"]["port"]) == ("smtp.example.com", 587)
    if stack.stack != "live":
        assert out["url"] == f"https://{stack.one(AZ + 'web:WebApp').plain_inputs['name']}.azurewebsites.net"


def test_no_secret_marker_in_plain_text(stack: Evaluation) -> None:
    # dev carries no user secrets (its DATABASE_URL is checked below); test and live carry them all.
    wrapped = json.dumps([r.inputs for r in stack.resources])
    for marker in MARKER_VALUES:
        assert (marker in wrapped) == (stack.stack != "dev"), f"{marker}: the scan below would prove nothing"
        for resource in stack.resources:
            assert marker not in plain_text(resource.inputs), f"{marker} in plain text in {resource.name}"
        assert marker not in plain_text(stack.outputs)


def test_generated_database_password_stays_secret(stack: Evaluation) -> None:
    password = stack.one("random:index/randomPassword:RandomPassword").name
    value = random_password(password)
    assert value in json.dumps([r.inputs for r in stack.resources])
    assert all(value not in plain_text(r.inputs) for r in stack.resources)


def test_a_package_that_does_not_match_its_sha256_fails(release: dict[str, str], dev_package: dict[str, str]) -> None:
    tampered = {**release, "sha256": "0" * 64}
    evaluation = evaluate("test", secrets=MARKERS, upstream=_upstream("test", tampered))
    assert evaluation.error is not None and "hashes to" in str(evaluation.error)


def _config(**changes: Any) -> StackConfig:
    raw: dict[str, Any] = {"role": "test", "target": "azure", "hosting": {"instances": 1}, "database": {}}
    for path, value in changes.items():
        node = raw
        *parents, leaf = path.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return StackConfig.model_validate(raw)


@pytest.mark.parametrize(("changes", "path"), [
    ({"hosting__size": "B1"}, "hosting.size"),
    ({"hosting__size": "S1", "hosting__instances": 12}, "hosting.instances"),
    ({"database__highAvailability": True}, "database.highAvailability"),
    ({"database__storageGb": 40}, "database.storageGb"),
    ({"database__backupRetentionDays": 3}, "database.backupRetentionDays"),
    ({"site__start": "gunicorn --bind 127.0.0.1:8000 app:application"}, "site.start"),
])
def test_check_refuses_what_azure_cannot_do(changes: dict[str, Any], path: str) -> None:
    hosting = azure.HOSTING(location="westeurope")
    assert [p for p, _, _ in azure.check(_config(), hosting)] == []
    assert [p for p, _, _ in azure.check(_config(**changes), hosting)] == [path]


@pytest.mark.parametrize(("role", "refused"), [("dev", False), ("test", True), ("live", True)])
def test_only_dev_may_install_requirements_at_start(role: str, refused: bool) -> None:
    assert azure.HOSTING(location="westeurope").install_requirements is False
    hosting = azure.HOSTING(location="westeurope", installRequirements=True)
    config = _config(role=role)
    assert [p for p, _, _ in azure.check(config, hosting)] == (["hosting.azure.installRequirements"] if refused else [])


def test_dev_can_still_opt_in_to_installing_requirements(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev", overrides={**DEV_ON_AZURE, "siteline:hosting.azure": {
        "location": "westeurope", "installRequirements": True}})
    assert evaluation.error is None, evaluation.error
    command_line = evaluation.one(AZ + "web:WebAppSlot").plain_inputs["siteConfig"]["appCommandLine"]
    assert command_line.startswith("if [ -f requirements.txt ]; then python3 -m pip install")


def test_missing_location_and_smtp_host_fail_at_preview(dev_package: dict[str, str]) -> None:
    evaluation = evaluate("dev", overrides={"siteline:target": "azure"})
    message = str(evaluation.error)
    assert "hosting.azure.location" in message and "smtp.host" in message
    assert not any(r.type.startswith(AZ) for r in evaluation.resources)


def test_default_start_command_listens_on_all_interfaces() -> None:
    default = StackConfig.model_fields["site"].default.start
    assert rules.start_command(default, default).startswith("python3 -m gunicorn --bind 0.0.0.0:${PORT}")
    assert rules.start_command("custom", default) == "custom"


def test_script_path_is_relative_to_the_project_and_found_from_it(tmp_path: Path) -> None:
    relative = azure.script_path(REPO)
    assert relative == "components/scripts/azure-release.sh" and (REPO / relative).is_file()
    with pytest.raises(ValueError, match="outside the project directory"):
        azure.script_path(tmp_path)


FAKE_AZ = """#!/usr/bin/env bash
echo "az $*" >> "$CALLS"
case "$*" in
  *"appsettings list"*"--slot staging"*) echo 0123456789abcdef ;;
  *"appsettings list"*) echo fedcba9876543210 ;;
esac
"""
FAKE_CURL = """#!/usr/bin/env bash
echo "curl ${*: -1}" >> "$CALLS"
echo '{"status": "ok", "release": "1.2.0"}'
"""


def test_swap_restarts_staging_before_warming_and_names_the_subscription(tmp_path: Path) -> None:
    """The script against stand-in az and curl: the order of its calls, and the subscription on each."""
    for name, body in (("az", FAKE_AZ), ("curl", FAKE_CURL)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "CALLS": str(calls), "SUBSCRIPTION": SUBSCRIPTION,
           "RESOURCE_GROUP": "siteline-test", "APP_NAME": "siteline-test-abc123", "SLOT": "staging",
           "STAGING_HOST": "s.azurewebsites.net", "PRODUCTION_HOST": "p.azurewebsites.net",
           "HEALTH_PATH": "/healthz", "RELEASE_VERSION": "1.2.0", "DEPLOYMENT": "0123456789abcdef",
           "WARMUP_TIMEOUT": "60"}
    run = subprocess.run(["bash", str(REPO / azure.script_path(REPO)), "swap"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    verbs = [" ".join(line.split()[1:4]) if line.startswith("az") else line for line in lines]
    assert verbs == ["account show --subscription", "webapp config appsettings", "webapp config appsettings",
                     "webapp restart --subscription", "curl https://s.azurewebsites.net/healthz",
                     "webapp deployment slot", "curl https://p.azurewebsites.net/healthz"]
    assert all(f"--subscription {SUBSCRIPTION}" in line for line in lines if line.startswith("az"))
    assert "--slot staging" in lines[3]
    missing = subprocess.run(["bash", str(REPO / azure.script_path(REPO)), "swap"],
                             env={**env, "SUBSCRIPTION": ""}, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "SUBSCRIPTION is not set" in missing.stderr
