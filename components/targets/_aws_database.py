"""AWS target, database half: RDS PostgreSQL, private and encrypted, protected on live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

# What a role gets when database.size is not set: small outside live, a general-purpose class on live.
DEFAULT_CLASS = {"dev": "db.t4g.micro", "review": "db.t4g.micro", "test": "db.t4g.small", "live": "db.m7g.large"}
USERNAME = "siteline"


@dataclass(frozen=True)
class Database:
    instance: aws.rds.Instance
    url: pulumi.Output[str]  # DATABASE_URL, always secret
    name: str  # the database inside the instance
    # What must finish before the site may be pointed at the instance (a refreshed copy's masking).
    ready: tuple[pulumi.Resource, ...] = ()


def subnet_group(name: str, stack: str, subnets: pulumi.Input[list[str]],
                 opts: pulumi.ResourceOptions) -> aws.rds.SubnetGroup:
    return aws.rds.SubnetGroup(f"{name}-db", subnet_ids=subnets, description=f"Siteline {stack}: database subnets",
                               opts=opts)


def database(name: str, cfg: Any, stack: str, subnets: aws.rds.SubnetGroup,
             security_group: aws.ec2.SecurityGroup, opts: pulumi.ResourceOptions) -> Database:
    db, live = cfg.database, cfg.role == "live"
    # Generated rather than RDS-managed: the site needs a complete DATABASE_URL, which Siteline
    # composes as a secret and stores in Secrets Manager. An RDS-managed password rotates behind it.
    password = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=opts)
    # Unique per stack lifetime, so a later stack of the same name cannot collide with this snapshot.
    snapshot_suffix = random.RandomId(f"{name}-db-final-snapshot", byte_length=4, opts=opts)
    keep_snapshot = live or db.retain_on_destroy
    instance = aws.rds.Instance(
        f"{name}-db",
        engine="postgres",
        engine_version=db.version,
        # Major upgrades are a deliberate operation (dump/test first), never a side effect of a config edit.
        allow_major_version_upgrade=False,
        auto_minor_version_upgrade=True,
        instance_class=db.size or DEFAULT_CLASS[cfg.role],
        allocated_storage=db.storage_gb,
        storage_type="gp3",
        storage_encrypted=True,
        publicly_accessible=False,
        db_subnet_group_name=subnets.name,
        vpc_security_group_ids=[security_group.id],
        db_name=db.name,
        username=USERNAME,
        password=password.result,
        backup_retention_period=db.backup_retention_days,
        multi_az=db.high_availability,
        deletion_protection=live,
        skip_final_snapshot=not keep_snapshot,
        final_snapshot_identifier=snapshot_suffix.hex.apply(lambda hex_: f"siteline-{stack}-final-{hex_}")
        if keep_snapshot else None,
        copy_tags_to_snapshot=True,
        # Live changes wait for the maintenance window; elsewhere they apply at once.
        apply_immediately=not live,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            protect=live, additional_secret_outputs=["password"])),
    )
    url = pulumi.Output.secret(pulumi.Output.concat(
        f"postgresql://{USERNAME}:", password.result, "@", instance.address, ":",
        instance.port.apply(str), f"/{db.name}?sslmode=require"))
    return Database(instance=instance, url=url, name=db.name)
