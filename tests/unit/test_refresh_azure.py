"""Database refresh on azure under mocks: restore at a moment, mask inside the network, then switch the site."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import mask
from components.refresh import RefreshError
from components.settings import MaskRule
from components.targets import _azure_refresh as copies
from tests.computed.azure_native import SUBSCRIPTION
from tests.computed.random import password as random_password
from tests.conftest import MARKER_VALUES, MARKERS, build_package
from tests.harness import Evaluation, Registered, evaluate, is_secret, plain_text

AZ = "azure-native:"
LIVE = "organization/siteline/live"
SOURCE_ID = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/siteline-live/providers/"
             "Microsoft.DBforPostgreSQL/flexibleServers/siteline-live-db-abc123")
RULES = [{"table": "people", "column": "email", "strategy": "email"},
         {"table": "people", "column": "phone", "strategy": "hash"}]
KEY = "20261126t1000z"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_package("1.0.0", tmp_path_factory.mktemp("dist"))


def _evaluate(release: dict[str, str], refresh_id: str | None = "2026-11-26T1000Z", location: str = "westeurope",
              source_target: str = "azure", **extra: Any) -> Evaluation:
    overrides: dict[str, Any] = {"siteline:database.mask": RULES, **extra}
    if refresh_id:
        overrides.update({"siteline:database.refreshFrom": LIVE, "siteline:database.refreshId": refresh_id})
    live = {"role": "live", "target": source_target, "contract": 1, "database": {
        "engine": "postgres", "host": "siteline-live-db-abc123.postgres.database.azure.com", "port": 5432,
        "name": "site", "id": SOURCE_ID, "location": location}}
    return evaluate("test", overrides=overrides, secrets=MARKERS,
                    upstream={"organization/siteline/dev": {"release": release, "contract": 1}, LIVE: live})


@pytest.fixture(scope="module")
def refreshed(release: dict[str, str]) -> Evaluation:
    evaluation = _evaluate(release)
    assert evaluation.error is None, evaluation.error
    return evaluation


@pytest.fixture(scope="module")
def plain(release: dict[str, str]) -> Evaluation:
    evaluation = _evaluate(release, refresh_id=None)
    assert evaluation.error is None, evaluation.error
    return evaluation


def copy_server(stack: Evaluation) -> Registered:
    return stack.named(f"-copy-{KEY}")


def depends(resource: Registered, on: Registered) -> bool:
    return on.urn in resource.dependencies


def test_the_copy_is_a_point_in_time_restore_of_the_source(refreshed: Evaluation) -> None:
    servers = refreshed.of_type(AZ + "dbforpostgresql:Server")
    assert len(servers) == 2, "the role's own server stays beside the copy"
    server = copy_server(refreshed)
    inputs = server.plain_inputs
    assert inputs["createMode"] == "PointInTimeRestore"
    assert inputs["sourceServerResourceId"] == SOURCE_ID
    assert inputs["pointInTimeUTC"] == "2026-11-26T10:00:00Z"
    assert inputs["location"] == "westeurope"
    assert inputs["serverName"].endswith(f"-r{KEY}")
    own = next(s for s in servers if s is not server)
    assert own.plain_inputs["createMode"] == "Default"
    # Same private placement as the role's own server: delegated subnet, this stack's DNS zone, no public endpoint.
    assert inputs["network"] == own.plain_inputs["network"]
    assert inputs["network"]["delegatedSubnetResourceId"].endswith("/subnets/database")
    assert inputs["network"]["publicNetworkAccess"] == "Disabled"
    assert "/privateDnsZones/siteline-test.private.postgres" in inputs["network"]["privateDnsZoneArmResourceId"]
    # The live protections stay on live: the copy must go once the next copy serves.
    assert not server.protect and not server.retain_on_delete and not server.delete_before_replace


def test_the_copy_gets_its_own_password_before_anything_connects(refreshed: Evaluation) -> None:
    login = refreshed.named(f"-copy-login-{KEY}")
    assert login.plain_inputs["create"] == "bash components/scripts/azure-refresh.sh set-password"
    assert is_secret(login.inputs["environment"]["ADMIN_PASSWORD"]) or is_secret(login.inputs["environment"])
    assert login.plain_inputs["environment"]["SERVER_ID"].endswith(
        "/flexibleServers/" + copy_server(refreshed).plain_inputs["serverName"])
    assert depends(login, copy_server(refreshed))
    assert "environment" in login.additional_secret_outputs


def test_masking_runs_once_inside_the_network_with_secure_values(refreshed: Evaluation) -> None:
    job = refreshed.one(AZ + "containerinstance:ContainerGroup")
    inputs = job.plain_inputs
    assert inputs["restartPolicy"] == "Never" and inputs["osType"] == "Linux"
    assert inputs["subnetIds"][0]["id"].endswith("/virtualNetworks/siteline-test-vnet/subnets/jobs")
    assert "ipAddress" not in inputs, "the masking container needs no address, public or private"
    [container] = inputs["containers"]
    own = next(s for s in refreshed.of_type(AZ + "dbforpostgresql:Server") if s is not copy_server(refreshed))
    assert container["image"] == f"postgres:{own.plain_inputs['version']}", "psql matches the server's version"
    script = " ".join(container["command"])
    assert "psql" in script and "--single-transaction" in script and "ON_ERROR_STOP=1" in script
    assert "set_config('siteline.mask_salt'" in script
    assert "-o /dev/null" in script, "psql would print set_config's result, the salt, into the container's logs"
    env = {e["name"]: e for e in container["environmentVariables"]}
    assert env["PGHOST"]["value"] == copy_server(refreshed).plain_inputs["serverName"] + ".postgres.database.azure.com"
    assert env["PGDATABASE"]["value"] == "site" and env["PGSSLMODE"]["value"] == "require"
    assert env["MASK_SQL"]["value"] == mask.script([MaskRule.model_validate(rule) for rule in RULES])
    for name, random_name in (("PGPASSWORD", f"-copy-password-{KEY}"), ("MASK_SALT", f"-mask-salt-{KEY}")):
        assert set(env[name]) == {"name", "secureValue"}, f"{name} must be a secure value, never a plain one"
        assert env[name]["secureValue"] == random_password(refreshed.named(random_name).name)
    assert "containers" in job.additional_secret_outputs
    assert depends(job, refreshed.named(f"-copy-login-{KEY}")), "masking waits for the copy's own password"
    salt = refreshed.named(f"-mask-salt-{KEY}")
    assert salt.plain_inputs["keepers"] == {"refreshId": "2026-11-26T1000Z"}


def test_the_jobs_subnet_is_delegated_to_container_instances(refreshed: Evaluation, plain: Evaluation) -> None:
    for stack in (refreshed, plain):
        vnet = stack.one(AZ + "network:VirtualNetwork").plain_inputs
        jobs = next(s for s in vnet["subnets"] if s["name"] == "jobs")
        assert jobs["delegations"][0]["serviceName"] == "Microsoft.ContainerInstance/containerGroups"
        assert jobs["addressPrefix"] == "10.43.0.0/27"
        assert vnet["addressSpace"]["addressPrefixes"] == ["10.42.0.0/16", "10.43.0.0/27"]


def test_the_wait_is_keyed_to_the_refresh_id_and_the_container(refreshed: Evaluation) -> None:
    wait = refreshed.named(f"-mask-wait-{KEY}")
    job = refreshed.one(AZ + "containerinstance:ContainerGroup")
    inputs = wait.plain_inputs
    assert inputs["create"] == "bash components/scripts/azure-refresh.sh wait-mask"
    assert "2026-11-26T1000Z" in inputs["triggers"]
    assert inputs["environment"]["CONTAINER_GROUP"] == job.plain_inputs["containerGroupName"]
    assert inputs["environment"]["SUBSCRIPTION"] == SUBSCRIPTION
    assert int(inputs["environment"]["MASK_TIMEOUT"]) == 3600
    assert depends(wait, job)


def test_the_site_switches_to_the_copy_only_after_masking(refreshed: Evaluation) -> None:
    wait = refreshed.named(f"-mask-wait-{KEY}")
    secret = refreshed.named("-secret-database-url")
    assert is_secret(secret.inputs["properties"]["value"]) or is_secret(secret.inputs["properties"])
    url = secret.plain_inputs["properties"]["value"]
    host = copy_server(refreshed).plain_inputs["serverName"] + ".postgres.database.azure.com"
    assert f"@{host}:5432/site?sslmode=require" in url
    assert random_password(refreshed.named(f"-copy-password-{KEY}").name) in url
    assert depends(secret, wait), "the new DATABASE_URL version must wait for masking"
    swap = refreshed.named("-swap")
    assert depends(swap, wait)
    staging = refreshed.named("-staging")
    assert depends(staging, secret), "the staging slot takes the new reference; the swap then moves traffic"
    out = refreshed.plain_outputs["database"]
    assert out["host"] == host and out["name"] == "site"
    assert out["id"].endswith("/flexibleServers/" + copy_server(refreshed).plain_inputs["serverName"])


def test_a_new_refresh_id_changes_the_deployment(release: dict[str, str], refreshed: Evaluation,
                                                 plain: Evaluation) -> None:
    again = _evaluate(release, refresh_id="2026-11-25T0800Z")
    assert again.error is None, again.error
    deployments = {e.named("-swap").plain_inputs["environment"]["DEPLOYMENT"] for e in (refreshed, again, plain)}
    assert len(deployments) == 3, "each copy is one new staging deployment and one swap"
    # A new id declares new resources beside the previous copy's; the previous ones, no longer declared, are deleted
    # only at the end of an update that succeeded (after the swap), never by a failed one.
    names = {r.name for r in refreshed.resources if KEY in r.name}
    assert names and not names & {r.name for r in again.resources}
    assert "siteline-test-db-" in again.named("-copy-20261125t0800z").plain_inputs["serverName"]


def test_no_secret_in_plain_text(refreshed: Evaluation) -> None:
    secrets = [random_password(refreshed.named(n).name) for n in (f"-copy-password-{KEY}", f"-mask-salt-{KEY}")]
    everything = json.dumps([r.inputs for r in refreshed.resources])
    for value in [*secrets, *MARKER_VALUES]:
        assert value in everything, f"{value}: the scan below would prove nothing"
        for resource in refreshed.resources:
            assert value not in plain_text(resource.inputs), f"{value} in plain text in {resource.name}"
        assert value not in plain_text(refreshed.outputs)


def test_without_refresh_from_there_is_no_copy(plain: Evaluation) -> None:
    assert plain.of_type(AZ + "containerinstance:ContainerGroup") == []
    [server] = plain.of_type(AZ + "dbforpostgresql:Server")
    assert server.plain_inputs["createMode"] == "Default"
    assert not [r for r in plain.resources if "-copy-" in r.name or "-mask-" in r.name]
    url = plain.named("-secret-database-url").plain_inputs["properties"]["value"]
    assert f"@{server.plain_inputs['serverName']}.postgres.database.azure.com:5432/site?" in url


def test_live_has_no_jobs_subnet(release: dict[str, str]) -> None:
    live = evaluate("live", secrets=MARKERS, upstream={
        "organization/siteline/test": {"release": release, "verifiedRelease": release, "contract": 1}})
    assert live.error is None, live.error
    vnet = live.one(AZ + "network:VirtualNetwork").plain_inputs
    assert [s["name"] for s in vnet["subnets"]] == ["app", "database"]


def test_mask_image_and_timeout_can_be_set(release: dict[str, str]) -> None:
    evaluation = _evaluate(release, **{"siteline:hosting.azure.maskImage": "myregistry.example/postgres:16",
                                       "siteline:hosting.azure.maskTimeout": 900})
    assert evaluation.error is None, evaluation.error
    [container] = evaluation.one(AZ + "containerinstance:ContainerGroup").plain_inputs["containers"]
    assert container["image"] == "myregistry.example/postgres:16"
    assert evaluation.named(f"-mask-wait-{KEY}").plain_inputs["environment"]["MASK_TIMEOUT"] == "900"


@pytest.mark.parametrize(("refresh_id", "moment"), [
    ("2026-11-26", "2026-11-26T00:00:00Z"), ("2026-11-26T1000Z", "2026-11-26T10:00:00Z"),
    ("2026-11-26T100530Z", "2026-11-26T10:05:30Z"), ("2026-11-26T1000Z.2", "2026-11-26T10:00:00Z")])
def test_refresh_ids_name_a_moment(refresh_id: str, moment: str) -> None:
    found = copies.point_in_time(refresh_id)
    assert found is not None and found.strftime("%Y-%m-%dT%H:%M:%SZ") == moment


@pytest.mark.parametrize(("refresh_id", "problem"), [
    ("first-copy", "names the moment to restore"), ("2026-13-01T1000Z", "names the moment to restore"),
    ("2026-11-26T10-00Z", "names the moment to restore"), ("2999-01-01T0000Z", "in the future")])
def test_a_refresh_id_that_names_no_past_moment_is_refused(release: dict[str, str], refresh_id: str,
                                                          problem: str) -> None:
    evaluation = _evaluate(release, refresh_id=refresh_id)
    assert evaluation.error is not None and "database.refreshId" in str(evaluation.error)
    assert problem in str(evaluation.error)
    assert evaluation.resources == []


def test_a_source_in_another_region_is_refused(release: dict[str, str]) -> None:
    evaluation = _evaluate(release, location="northeurope")
    assert isinstance(evaluation.error, RefreshError)
    assert "northeurope" in str(evaluation.error) and "hosting.azure.location" in str(evaluation.error)
    assert not [r for r in evaluation.resources if r.custom]


def test_a_source_on_another_target_is_refused(release: dict[str, str]) -> None:
    evaluation = _evaluate(release, source_target="vps")
    assert isinstance(evaluation.error, RefreshError)
    assert "can take a database copy only from azure" in str(evaluation.error)


def test_a_jobs_range_inside_the_address_space_is_refused(release: dict[str, str]) -> None:
    evaluation = _evaluate(release, **{"siteline:hosting.azure.jobsAddressRange": "10.42.200.0/27"})
    assert evaluation.error is not None and "hosting.azure.jobsAddressRange" in str(evaluation.error)
