"""Refresh on the aws target under mocks: snapshot, restore beside, mask in the VPC, then switch DATABASE_URL."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import mask
from components.refresh import RefreshError
from components.settings import MaskRule
from components.targets import _aws_refresh
from tests.computed import aws as aws_computed
from tests.computed.random import password as random_password
from tests.conftest import MARKER_VALUES, MARKERS, build_package
from tests.harness import Evaluation, Registered, evaluate, is_secret, plain_text
from tests.policy import from_evaluation, mandatory, run_pack
from tests.unit.test_target_aws import aws_overrides, upstream

LIVE = "organization/siteline/live"
SOURCE_ID = "siteline-live-db-7c1e"
RDS = "aws:rds/instance:Instance"
SNAPSHOT = "aws:rds/snapshot:Snapshot"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
COMMAND = "command:local:Command"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
ENVIRONMENT = "aws:elasticbeanstalk/environment:Environment"
SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
MASK_RULES = [{"table": "people", "column": "email", "strategy": "email"},
              {"table": "people", "column": "phone", "strategy": "hash"}]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_package("1.4.0", tmp_path_factory.mktemp("aws-refresh-release"))


def refreshed(release: dict[str, str], refresh_id: str = "2026-11-26", region: str = "eu-west-1",
              stack: str = "test") -> Evaluation:
    source = {"role": "live", "target": "aws", "contract": 1, "database": {
        "engine": "postgres", "host": f"{SOURCE_ID}.c0.eu-west-1.rds.amazonaws.com", "port": 5432, "name": "site",
        "id": SOURCE_ID, "region": region}}
    extra = {"siteline:database.refreshFrom": LIVE, "siteline:database.refreshId": refresh_id,
             "siteline:database.mask": MASK_RULES}
    return evaluate(stack, overrides=aws_overrides(stack, extra=extra), secrets=MARKERS,
                    upstream={**upstream(stack, release), LIVE: source})


@pytest.fixture(scope="module")
def copy(release: dict[str, str]) -> Evaluation:
    evaluation = refreshed(release)
    assert evaluation.error is None, evaluation.error
    return evaluation


@pytest.fixture(scope="module")
def next_copy(release: dict[str, str]) -> Evaluation:
    evaluation = refreshed(release, refresh_id="2026-12-03")
    assert evaluation.error is None, evaluation.error
    return evaluation


@pytest.fixture(scope="module")
def plain_test(release: dict[str, str]) -> Evaluation:
    evaluation = evaluate("test", overrides=aws_overrides("test"), secrets=MARKERS, upstream=upstream("test", release))
    assert evaluation.error is None, evaluation.error
    return evaluation


def computed(resource: Registered) -> dict[str, Any]:
    """What the mocked provider answered for the resource."""
    return aws_computed.outputs(resource.type, resource.name, resource.inputs)


def urn(evaluation: Evaluation, resource_type: str, suffix: str) -> str:
    return next(r.urn for r in evaluation.of_type(resource_type) if r.name.endswith(suffix))


def secret_version(evaluation: Evaluation, suffix: str) -> Registered:
    return next(r for r in evaluation.of_type(SECRET_VERSION) if r.name.endswith(suffix))


def environment_option(evaluation: Evaluation, namespace: str, name: str) -> Any:
    settings = evaluation.one(ENVIRONMENT).plain_inputs["settings"]
    return next(s["value"] for s in settings if s["namespace"] == namespace and s["name"] == name)


def test_a_snapshot_of_the_source_is_restored_into_a_new_private_encrypted_instance(copy: Evaluation) -> None:
    snapshot = copy.one(SNAPSHOT).plain_inputs
    assert snapshot["dbInstanceIdentifier"] == SOURCE_ID
    assert snapshot["dbSnapshotIdentifier"] == "siteline-test-refresh-2026-11-26"
    assert copy.one(SNAPSHOT).ignore_changes == ["dbInstanceIdentifier"], "taken once per refresh id"
    # The copy is the stack's only database: the stack's own empty instance is not declared beside it.
    restored = copy.one(RDS)
    inputs = restored.plain_inputs
    assert restored.name == "test-aws-db-r2026-11-26"
    assert inputs["snapshotIdentifier"] == snapshot["dbSnapshotIdentifier"]
    assert urn(copy, SNAPSHOT, "refresh-snapshot") in restored.dependencies
    assert inputs["identifier"] == "siteline-test-r2026-11-26"
    assert inputs["dbSubnetGroupName"] == computed(copy.one(SUBNET_GROUP))["name"], "this stack's subnet group"
    db_group = next(r for r in copy.of_type("aws:ec2/securityGroup:SecurityGroup") if r.name.endswith("-db"))
    assert inputs["vpcSecurityGroupIds"] == [f"{db_group.name}-id"]
    assert inputs["storageEncrypted"] is True and inputs["publiclyAccessible"] is False
    assert inputs["engine"] == "postgres" and "dbName" not in inputs and "username" not in inputs
    # A throwaway copy: deletable, no final snapshot.
    assert inputs["deletionProtection"] is False and inputs["skipFinalSnapshot"] is True
    assert not restored.protect and not restored.delete_before_replace and not restored.retain_on_delete
    assert is_secret(restored.inputs["password"]) and "password" in restored.additional_secret_outputs
    password = copy.named("db-copy-password").plain_inputs
    assert password["keepers"] == {"refreshId": "2026-11-26"}, "a fresh credential per copy"


def test_masking_runs_inside_the_vpc_before_the_switch(copy: Evaluation) -> None:
    task = copy.one(TASK).plain_inputs
    assert task["requiresCompatibilities"] == ["FARGATE"] and task["networkMode"] == "awsvpc"
    [container] = json.loads(task["containerDefinitions"])
    environment = {e["name"]: e["value"] for e in container["environment"]}
    rules = tuple(MaskRule.model_validate(rule) for rule in MASK_RULES)
    assert environment["MASK_SQL"] == mask.script(rules)
    assert environment["PGHOST"] == copy.plain_outputs["database"]["host"] and environment["PGDATABASE"] == "site"
    # The password and the salt are read by ECS from Secrets Manager, pinned to this copy's secret version.
    credentials = next(r for r in copy.of_type(SECRET_VERSION) if r.name == "test-aws-mask")
    stored = json.loads(credentials.plain_inputs["secretString"])
    assert stored == {"password": random_password("test-aws-db-copy-password"),
                      "salt": random_password("test-aws-mask-salt")}
    assert is_secret(credentials.inputs["secretString"])
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert set(secrets) == {"PGPASSWORD", "MASK_SALT"} and not set(secrets) & set(environment)
    assert secrets["MASK_SALT"].endswith(":salt::" + computed(credentials)["versionId"])
    assert copy.named("mask-salt").plain_inputs["keepers"] == {"refreshId": "2026-11-26"}
    # The task's group reaches the database, and the database admits it.
    mask_group = "test-aws-mask-id"
    ingress = [r.plain_inputs for r in copy.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.plain_inputs.get("referencedSecurityGroupId") == mask_group]
    assert [(r["securityGroupId"], r["fromPort"]) for r in ingress] == [("test-aws-db-id", 5432.0)]
    # The run: keyed to the refresh id, in this stack's subnets, after the copy exists and its credentials are set.
    run = copy.one(COMMAND)
    assert run.plain_inputs["triggers"][0] == "2026-11-26"
    assert run.plain_inputs["environment"]["SECURITY_GROUP"] == mask_group
    assert run.plain_inputs["environment"]["SUBNETS"] == ",".join(copy.one(SUBNET_GROUP).plain_inputs["subnetIds"])
    for suffix, kind in (("db-r2026-11-26", RDS), ("aws-mask", SECRET_VERSION), ("aws-mask", TASK)):
        assert urn(copy, kind, suffix) in run.dependencies, f"masking must wait for {kind}"


def test_the_site_switches_to_the_copy_only_after_masking(copy: Evaluation) -> None:
    database_url = secret_version(copy, "secret-database-url")
    assert is_secret(database_url.inputs["secretString"])
    restored = copy.one(RDS)
    address = copy.plain_outputs["database"]["host"]
    assert address.startswith(restored.plain_inputs["identifier"] + ".")
    assert database_url.plain_inputs["secretString"] == (
        f"postgresql://siteline:{random_password('test-aws-db-copy-password')}@{address}:5432/site?sslmode=require")
    masking = urn(copy, COMMAND, "aws-mask")
    assert masking in database_url.dependencies, "DATABASE_URL must not point at an unmasked copy"
    assert masking in copy.one(ENVIRONMENT).dependencies
    database = copy.plain_outputs["database"]
    assert database["id"] == "siteline-test-r2026-11-26" and database["name"] == "site"


def test_a_new_refresh_id_is_a_new_copy_and_a_new_immutable_deployment(copy: Evaluation, next_copy: Evaluation) -> None:
    assert next_copy.one(SNAPSHOT).plain_inputs["dbSnapshotIdentifier"] == "siteline-test-refresh-2026-12-03"
    assert next_copy.one(RDS).plain_inputs["identifier"] == "siteline-test-r2026-12-03"
    # A new resource, not a replacement: the previous copy is no longer declared, so Pulumi deletes it only at the
    # end of a successful update, after the environment switched (never at the start of a retry).
    assert next_copy.one(RDS).name == "test-aws-db-r2026-12-03" and copy.one(RDS).name not in {
        r.name for r in next_copy.resources}
    masking = urn(next_copy, COMMAND, "aws-mask")
    assert urn(next_copy, RDS, "db-r2026-12-03") in next_copy.one(COMMAND).dependencies
    assert masking in secret_version(next_copy, "secret-database-url").dependencies
    assert next_copy.one(COMMAND).plain_inputs["triggers"][0] == "2026-12-03"
    namespace = "aws:elasticbeanstalk:application:environment"
    before = environment_option(copy, namespace, "SITELINE_SECRET_VERSIONS")
    after = environment_option(next_copy, namespace, "SITELINE_SECRET_VERSIONS")
    assert before != after, "a new DATABASE_URL version must change the environment, so instances are replaced"
    assert environment_option(copy, "aws:elasticbeanstalk:command", "DeploymentPolicy") == "Immutable"


def test_no_credential_of_the_copy_in_plain_text(copy: Evaluation) -> None:
    markers = [*MARKER_VALUES, random_password("test-aws-db-copy-password"), random_password("test-aws-mask-salt")]
    for resource in copy.resources:
        visible = plain_text(resource.inputs)
        for marker in markers:
            assert marker not in visible, f"{marker} in plain text in {resource.type} {resource.name}"
    assert not any(marker in plain_text(copy.outputs) for marker in markers)
    everything = json.dumps([r.inputs for r in copy.resources])
    assert all(marker in everything for marker in markers), "the scan is not vacuous"
    # The command on the deploying machine gets identifiers only; the task definition holds ARNs only.
    run = copy.one(COMMAND).plain_inputs
    assert not any(marker in json.dumps(run) for marker in markers)
    assert "stdin" not in run


def test_a_stack_without_refresh_from_has_none_of_it(plain_test: Evaluation) -> None:
    types = {r.type for r in plain_test.resources}
    assert not types & {SNAPSHOT, TASK, COMMAND, "aws:ecs/cluster:Cluster", "aws:cloudwatch/logGroup:LogGroup"}
    rds = plain_test.one(RDS)
    assert rds.name == "test-aws-db" and "snapshotIdentifier" not in rds.plain_inputs
    assert not [r for r in plain_test.resources if "mask" in r.name or "copy" in r.name]


def test_a_source_in_another_region_is_refused_before_anything_is_declared(release: dict[str, str]) -> None:
    evaluation = refreshed(release, region="us-east-1")
    assert isinstance(evaluation.error, RefreshError)
    assert "same account and region" in str(evaluation.error)
    assert not [r for r in evaluation.resources if r.custom]


def test_live_refuses_a_refresh(release: dict[str, str]) -> None:
    evaluation = refreshed(release, stack="live")
    assert evaluation.error is not None and "database.refreshFrom" in str(evaluation.error)
    assert not [r for r in evaluation.resources if r.custom]


def test_the_task_sends_the_salt_over_stdin_never_as_an_argument(tmp_path: Path) -> None:
    """MASK_SHELL run with a stand-in psql that records its arguments and its stdin."""
    psql = tmp_path / "psql"
    psql.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\ncat > {tmp_path}/stdin\n')
    psql.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "MASK_SALT": "SALT-secret-42", "MASK_SQL": "UPDATE t SET c = 1;",
           "PGDATABASE": "site", "PGHOST": "copy"}
    subprocess.run(["sh", "-c", _aws_refresh.MASK_SHELL], env=env, check=True, capture_output=True)
    stdin = (tmp_path / "stdin").read_text().splitlines()
    assert stdin == ["\\set VERBOSITY terse", "SET siteline.mask_salt = 'SALT-secret-42';",
                     "UPDATE t SET c = 1;"]
    args = (tmp_path / "args").read_text()
    assert "SALT" not in args and "--single-transaction" in args and "ON_ERROR_STOP=1" in args


@pytest.mark.parametrize("exit_code", ["0", "1"])
def test_the_run_fails_unless_the_task_exits_zero(tmp_path: Path, exit_code: str) -> None:
    """RUN_MASK with a stand-in AWS CLI: the update goes on only when the masking task exited 0."""
    cli = tmp_path / "aws"
    cli.write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        'case "$*" in\n'
        '  *run-task*) echo arn:aws:ecs:eu-west-1:1:task/c/abc ;;\n'
        "  *lastStatus*) echo STOPPED ;;\n"
        f'  *exitCode*) printf "{exit_code}\\tEssential container in task exited\\n" ;;\n'
        "esac\n")
    cli.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "REGION": "eu-west-1", "REFRESH_ID": "7",
           "CLUSTER": "c", "TASK_DEFINITION": "td", "SUBNETS": "subnet-1,subnet-2", "SECURITY_GROUP": "sg-1",
           "PUBLIC_IP": "ENABLED", "LOG_GROUP": "/siteline/test/mask", "TIMEOUT_MINUTES": "1"}
    result = subprocess.run(["bash", "-c", _aws_refresh.RUN_MASK], env=env, capture_output=True, text=True)
    assert (result.returncode == 0) == (exit_code == "0"), result.stderr
    calls = (tmp_path / "calls").read_text()
    assert "--region eu-west-1 ecs run-task" in calls and "subnets=[subnet-1,subnet-2]" in calls
    if exit_code != "0":
        assert "keeps its current database" in result.stderr


def test_the_scripts_pass_shellcheck(tmp_path: Path) -> None:
    for name, shell, text in (("run", "bash", _aws_refresh.RUN_MASK), ("task", "sh", _aws_refresh.MASK_SHELL)):
        script = tmp_path / name
        script.write_text(f"#!/bin/{shell}\n{text}")
        result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_the_refreshed_stack_passes_the_policy_pack(copy: Evaluation) -> None:
    resource_view, stack_view = from_evaluation(copy)
    assert mandatory(run_pack(resource_view, stack_view)) == []
