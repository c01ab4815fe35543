"""AWS target, refresh half: a masked copy of the source stack's RDS instance, restored from a snapshot.

Order, once per refresh id: snapshot the source instance -> restore a new instance from it (this stack's subnet
group and database security group, private, encrypted, a fresh master password) -> mask it with a one-off ECS
Fargate task inside the VPC -> only then the DATABASE_URL secret gets a new version, whose id changes the
environment's SITELINE_SECRET_VERSIONS: Elastic Beanstalk replaces the instances immutably with ones that read
the copy. The previous copy is an instance the program no longer declares: Pulumi deletes it after the
environment updated.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pulumi_command import local

from components import mask
from components.refresh import Refresh, RefreshError
from components.targets._aws_database import DEFAULT_CLASS, USERNAME, Database
from components.targets._aws_network import POSTGRES, Network

# psql 17 talks to every server version Siteline allows (13-17); the image is the official one on public ECR.
MASK_IMAGE = "public.ecr.aws/docker/library/postgres:17-alpine"
MASK_TIMEOUT_MINUTES = 120
RDS_IDENTIFIER = r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$"

# Inside the task. The salt and the password arrive as environment variables that ECS fills from Secrets Manager
# when the task starts (the task definition holds only their ARNs). The salt goes to psql over stdin through
# printf, a shell builtin: it is never a process argument. VERBOSITY terse keeps row values that an error's DETAIL
# would quote (a unique violation, say) out of the task's log.
MASK_SHELL = r"""set -eu
{
  printf '%s\n' '\set VERBOSITY terse'
  printf "SET siteline.mask_salt = '%s';\n" "$MASK_SALT"
  printf '%s\n' "$MASK_SQL"
} | psql --no-psqlrc --quiet --single-transaction -v ON_ERROR_STOP=1
echo "siteline: masked $PGDATABASE on $PGHOST"
"""

# On the machine running `pulumi up` (needs the AWS CLI v2): start the task, wait for it, fail on anything but
# exit code 0. A failure stops the update before DATABASE_URL changes, so the site keeps its current database.
RUN_MASK = r"""set -euo pipefail
ecs() { aws --region "$REGION" ecs "$@"; }
echo "siteline: masking the copy for refresh $REFRESH_ID with $TASK_DEFINITION"
network="awsvpcConfiguration={subnets=[$SUBNETS],securityGroups=[$SECURITY_GROUP],assignPublicIp=$PUBLIC_IP}"
task=$(ecs run-task --cluster "$CLUSTER" --task-definition "$TASK_DEFINITION" --launch-type FARGATE --count 1 \
  --started-by siteline-mask --network-configuration "$network" --query 'tasks[0].taskArn' --output text)
if [ -z "$task" ] || [ "$task" = None ]; then
  echo "siteline: ECS started no masking task; the site keeps its current database" >&2
  exit 1
fi
echo "siteline: task $task"
deadline=$((SECONDS + TIMEOUT_MINUTES * 60))
status() { ecs describe-tasks --cluster "$CLUSTER" --tasks "$task" --query 'tasks[0].lastStatus' --output text; }
until [ "$(status)" = STOPPED ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    ecs stop-task --cluster "$CLUSTER" --task "$task" --reason "siteline: masking timed out" > /dev/null
    echo "siteline: masking timed out after $TIMEOUT_MINUTES minutes; the site keeps its current database" >&2
    exit 1
  fi
  sleep 15
done
read -r code reason < <(ecs describe-tasks --cluster "$CLUSTER" --tasks "$task" \
  --query 'tasks[0].[containers[0].exitCode, stoppedReason]' --output text)
if [ "$code" != 0 ]; then
  echo "siteline: masking failed (exit $code: $reason); its transaction rolled back, the site keeps its current" \
    "database; the task's log is in $LOG_GROUP" >&2
  exit 1
fi
echo "siteline: masking done"
"""


def _identifier(*parts: str) -> str:
    """An RDS identifier (letters, digits, single hyphens, a letter first, at most 63) from the parts."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", "-".join(parts).lower()))[:63].strip("-")


def source_instance(copy: Refresh, region: str) -> str:
    """The source's DB instance identifier; refused before anything is declared when RDS cannot snapshot it here."""
    source, identifier = copy.source, str(copy.source.get("id", ""))
    if str(source.get("region") or "") != region:
        raise RefreshError(
            f"siteline:database.refreshFrom: {copy.source_stack} runs in region {source.get('region')!r} and this "
            f"stack in {region!r}; an RDS snapshot restores only in its own account and region. Fix: refresh from a "
            "stack in the same account and region, or set hosting.aws.region to the source's.")
    if not re.fullmatch(RDS_IDENTIFIER, identifier):
        raise RefreshError(
            f"siteline:database.refreshFrom: {copy.source_stack} exports database id {identifier!r}, not an RDS "
            f"instance identifier. Fix: run pulumi up on {copy.source_stack} with this version of Siteline first.")
    return identifier


def restored(name: str, cfg: Any, stack: str, copy: Refresh, source_id: str, region: str,
             subnets: aws.rds.SubnetGroup, net: Network, opts: pulumi.ResourceOptions) -> Database:
    """The masked copy the site switches to. Every resource here exists only on a stack with refreshFrom."""
    db = cfg.database
    keepers = {"refreshId": copy.refresh_id}
    # Named after the refresh id, so a new id is a new snapshot and a new instance beside the current ones.
    snapshot = aws.rds.Snapshot(
        f"{name}-refresh-snapshot", db_instance_identifier=source_id,
        db_snapshot_identifier=_identifier("siteline", stack, "refresh", copy.refresh_id),
        tags={"siteline:refresh-id": copy.refresh_id, "siteline:refreshed-from": copy.source_stack},
        # The snapshot is of the source as it was for this refresh id; a source replaced since (a new identifier)
        # is copied by the next refresh id, not by retaking this snapshot under the same name.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["dbInstanceIdentifier"])))
    # A new master password per copy (the snapshot carries the source's, which the restore replaces): until the
    # switch, only the masking task can sign in to the copy; not even the site's current instances can.
    password = random.RandomPassword(f"{name}-db-copy-password", length=32, special=False, keepers=keepers,
                                     opts=opts)
    salt = random.RandomPassword(f"{name}-mask-salt", length=32, special=False, keepers=keepers, opts=opts)
    # One resource per refresh id, not one resource replaced: the previous copy is then a resource the program no
    # longer declares, which Pulumi deletes only at the end of a successful update, after the environment moved
    # on. (A replaced one that a failed update left behind is "pending delete", and Pulumi deletes those at the
    # start of the next update, while the site may still be reading it.)
    instance = aws.rds.Instance(
        f"{name}-db-r{copy.refresh_id}",
        identifier=_identifier("siteline", stack, f"r{copy.refresh_id}"),
        snapshot_identifier=snapshot.db_snapshot_identifier,
        # Engine version and storage size come from the snapshot: the copy runs what the source runs.
        engine="postgres",
        allow_major_version_upgrade=False,
        auto_minor_version_upgrade=True,
        instance_class=db.size or DEFAULT_CLASS[cfg.role],
        storage_type="gp3",
        storage_encrypted=True,
        publicly_accessible=False,
        db_subnet_group_name=subnets.name,
        vpc_security_group_ids=[net.database.id],
        password=password.result,
        backup_retention_period=db.backup_retention_days,
        multi_az=db.high_availability,
        # A throwaway copy (never on live, which refuses refreshFrom): deletable, and no final snapshot.
        deletion_protection=False,
        skip_final_snapshot=True,
        copy_tags_to_snapshot=True,
        apply_immediately=True,
        tags={"siteline:refresh-id": copy.refresh_id, "siteline:refreshed-from": copy.source_stack},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])))

    masked = _masking(name, stack, copy, region, instance, password, salt, net, opts)
    database_name = str(copy.source.get("name") or db.name)  # a snapshot restore keeps the source's database name
    url = pulumi.Output.secret(pulumi.Output.concat(
        f"postgresql://{USERNAME}:", password.result, "@", instance.address, ":", instance.port.apply(str),
        f"/{database_name}?sslmode=require"))
    return Database(instance=instance, url=url, name=database_name, ready=(masked,))


def _masking(name: str, stack: str, copy: Refresh, region: str, instance: aws.rds.Instance,
             password: random.RandomPassword, salt: random.RandomPassword, net: Network,
             opts: pulumi.ResourceOptions) -> local.Command:
    """A one-off Fargate task in the VPC runs components/mask.py's script on the copy; a local command waits for it."""
    label = re.sub(r"[^A-Za-z0-9_-]", "-", stack)
    credentials = aws.secretsmanager.Secret(
        f"{name}-mask", name_prefix=f"siteline/{stack}/mask-", recovery_window_in_days=7,
        description=f"Siteline {stack}: the masking task's password for the fresh copy, and the mask salt", opts=opts)
    credentials_version = aws.secretsmanager.SecretVersion(
        f"{name}-mask", secret_id=credentials.id,
        secret_string=pulumi.Output.secret(
            pulumi.Output.json_dumps({"password": password.result, "salt": salt.result})),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["secretString"])))
    logs = aws.cloudwatch.LogGroup(f"{name}-mask", name=f"/siteline/{label}/mask", retention_in_days=14, opts=opts)

    # The task's own network door: out to the database on 5432, and out on 443 for the image, Secrets Manager and
    # CloudWatch Logs. The database admits it beside the site's instances.
    group = aws.ec2.SecurityGroup(f"{name}-mask", vpc_id=net.vpc_id, tags={"Name": f"{name}-mask"},
                                  description="Siteline masking task: PostgreSQL to the database, HTTPS out", opts=opts)
    rules = [
        aws.vpc.SecurityGroupEgressRule(f"{name}-mask-out-db", security_group_id=group.id, description="mask out db",
                                        ip_protocol="tcp", from_port=POSTGRES, to_port=POSTGRES,
                                        referenced_security_group_id=net.database.id, opts=opts),
        aws.vpc.SecurityGroupEgressRule(f"{name}-mask-out-https", security_group_id=group.id,
                                        description="mask out https", ip_protocol="tcp", from_port=443, to_port=443,
                                        cidr_ipv4="0.0.0.0/0", opts=opts),
        aws.vpc.SecurityGroupIngressRule(f"{name}-db-in-mask", security_group_id=net.database.id,
                                         description="db in mask", ip_protocol="tcp", from_port=POSTGRES,
                                         to_port=POSTGRES, referenced_security_group_id=group.id, opts=opts),
    ]

    # Only the ECS agent reads the secret (to fill the container's environment); the container itself gets no role.
    role = aws.iam.Role(f"{name}-mask", description=f"Siteline {stack}: start the masking task", opts=opts,
                        assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                            "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Action": "sts:AssumeRole"}]}))
    policy = aws.iam.RolePolicy(
        f"{name}-mask", role=role.id, opts=opts,
        policy=pulumi.Output.all(credentials.arn, logs.arn).apply(lambda v: json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ReadTheMaskCredentials", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": v[0]},
                {"Sid": "WriteTheTaskLog", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": f"{v[1]}:*"},
            ],
        })))
    cluster = aws.ecs.Cluster(f"{name}-mask", opts=opts)

    def container(values: list[Any]) -> str:
        address, port, secret_arn, version_id, log_group = values
        # Pinned to this copy's secret version: the task reads exactly the password and salt made for it.
        def secret(key: str) -> str:
            return f"{secret_arn}:{key}::{version_id}"
        return json.dumps([{
            "name": "mask", "image": MASK_IMAGE, "essential": True,
            "entryPoint": ["sh", "-c"], "command": [MASK_SHELL],
            "environment": [{"name": key, "value": str(value)} for key, value in (
                ("PGHOST", address), ("PGPORT", port), ("PGUSER", USERNAME),
                ("PGDATABASE", str(copy.source.get("name") or "")), ("PGSSLMODE", "require"),
                ("PGCONNECT_TIMEOUT", "30"), ("PGAPPNAME", "siteline-mask"), ("MASK_SQL", mask.script(copy.mask)))],
            "secrets": [{"name": "PGPASSWORD", "valueFrom": secret("password")},
                        {"name": "MASK_SALT", "valueFrom": secret("salt")}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": "mask"}},
        }], sort_keys=True)

    task = aws.ecs.TaskDefinition(
        f"{name}-mask", family=f"siteline-{label}-mask", requires_compatibilities=["FARGATE"], network_mode="awsvpc",
        cpu="512", memory="1024", execution_role_arn=role.arn,
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(operating_system_family="LINUX",
                                                                   cpu_architecture="X86_64"),
        container_definitions=pulumi.Output.all(instance.address, instance.port, credentials.arn,
                                                credentials_version.version_id, logs.name).apply(container),
        opts=opts)

    # Not an AWS resource: parented to the target, on the default command provider.
    return local.Command(
        f"{name}-mask", create=RUN_MASK, interpreter=["/bin/bash", "-c"],
        # Only identifiers and ARNs: the password and the salt never leave Secrets Manager on this machine.
        environment={
            "REGION": region, "REFRESH_ID": copy.refresh_id, "CLUSTER": cluster.arn, "TASK_DEFINITION": task.arn,
            "SUBNETS": net.private_subnets.apply(",".join), "SECURITY_GROUP": group.id,
            "PUBLIC_IP": "ENABLED" if net.instances_public else "DISABLED", "LOG_GROUP": logs.name,
            "TIMEOUT_MINUTES": str(MASK_TIMEOUT_MINUTES)},
        # Once per copy: a new refresh id (or a replaced copy) runs it on the new instance. A changed task (new mask
        # rules) runs the new script on the current copy, in one transaction, so a rule added later applies at once.
        triggers=[copy.refresh_id, instance.identifier],
        opts=pulumi.ResourceOptions(parent=opts.parent, depends_on=[instance, credentials_version, policy, *rules]))
