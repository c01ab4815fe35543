"""AWS target, access half: the site's secrets in Secrets Manager and the two IAM roles Elastic Beanstalk needs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Access:
    secret_arns: dict[str, pulumi.Output[str]]  # variable name -> secret ARN (an ARN is not a secret)
    secret_versions: list[aws.secretsmanager.SecretVersion]
    instance_profile: aws.iam.InstanceProfile
    service_role: aws.iam.Role


def _assume(service: str, external_id: str | None = None) -> str:
    statement: dict[str, object] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def access(name: str, stack: str, live: bool, secrets: Mapping[str, pulumi.Output[str]],
           bundle_bucket_arn: pulumi.Output[str], partition: pulumi.Output[str],
           opts: pulumi.ResourceOptions, waits: Mapping[str, Sequence[pulumi.Resource]] | None = None) -> Access:
    """`waits`: variable -> resources its new value must wait for (a refreshed DATABASE_URL waits for masking)."""
    arns: dict[str, pulumi.Output[str]] = {}
    versions: list[aws.secretsmanager.SecretVersion] = []
    for variable in sorted(secrets):
        label = variable.lower().replace("_", "-")
        secret = aws.secretsmanager.Secret(
            f"{name}-secret-{label}", name_prefix=f"siteline/{stack}/{variable}-",
            description=f"Siteline {stack}: the site's {variable}",
            # Live keeps a deleted secret recoverable for 30 days; elsewhere a week is enough.
            recovery_window_in_days=30 if live else 7, opts=opts)
        versions.append(aws.secretsmanager.SecretVersion(
            f"{name}-secret-{label}", secret_id=secret.id, secret_string=pulumi.Output.secret(secrets[variable]),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                additional_secret_outputs=["secretString"], depends_on=list((waits or {}).get(variable, ()))))))
        arns[variable] = secret.arn

    def managed(policy: str) -> pulumi.Output[str]:
        return partition.apply(lambda p: f"arn:{p}:iam::aws:policy/{policy}")

    # Instances: the web tier managed policy (logs, health, EB's own bucket), plus read access to this
    # stack's secrets and release bundles and nothing else.
    instance_role = aws.iam.Role(f"{name}-instance", assume_role_policy=_assume("ec2.amazonaws.com"),
                                 description=f"Siteline {stack}: Elastic Beanstalk instances", opts=opts)
    aws.iam.RolePolicyAttachment(f"{name}-instance-web-tier", role=instance_role.name,
                                 policy_arn=managed("AWSElasticBeanstalkWebTier"), opts=opts)
    secret_arns = pulumi.Output.all(*[arns[v] for v in sorted(arns)])
    aws.iam.RolePolicy(
        f"{name}-instance-site", role=instance_role.id,
        policy=pulumi.Output.all(secret_arns, bundle_bucket_arn).apply(lambda v: json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                *([{"Sid": "ReadThisStacksSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                    "Resource": sorted(v[0])}] if v[0] else []),
                {"Sid": "ReadReleaseBundles", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                 "Resource": f"{v[1]}/*"},
            ],
        })), opts=opts)
    instance_profile = aws.iam.InstanceProfile(f"{name}-instance", role=instance_role.name, opts=opts)

    # The service role only monitors health; the deploying identity creates the environment's resources.
    service_role = aws.iam.Role(f"{name}-service", assume_role_policy=_assume(
        "elasticbeanstalk.amazonaws.com", external_id="elasticbeanstalk"),
        description=f"Siteline {stack}: Elastic Beanstalk service", opts=opts)
    aws.iam.RolePolicyAttachment(f"{name}-service-health", role=service_role.name,
                                 policy_arn=managed("service-role/AWSElasticBeanstalkEnhancedHealth"), opts=opts)
    return Access(secret_arns=arns, secret_versions=versions, instance_profile=instance_profile,
                  service_role=service_role)


def version_cleanup(name: str, service_role: aws.iam.Role, application_arn: pulumi.Output[str],
                    bundle_bucket_arn: pulumi.Output[str], opts: pulumi.ResourceOptions) -> aws.iam.RolePolicy:
    """What EB's version lifecycle does as the service role: delete this application's old versions and bundles."""
    return aws.iam.RolePolicy(
        f"{name}-service-version-cleanup", role=service_role.id,
        policy=pulumi.Output.all(application_arn, bundle_bucket_arn).apply(lambda v: json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                # Read-only listing: which versions exist and which an environment still runs (never deleted).
                {"Sid": "ListVersions", "Effect": "Allow", "Resource": "*",
                 "Action": ["elasticbeanstalk:DescribeApplications", "elasticbeanstalk:DescribeApplicationVersions",
                            "elasticbeanstalk:DescribeEnvironments"]},
                {"Sid": "DeleteOldVersions", "Effect": "Allow", "Action": "elasticbeanstalk:DeleteApplicationVersion",
                 "Resource": v[0].replace(":application/", ":applicationversion/", 1) + "/*"},
                {"Sid": "DeleteOldBundles", "Effect": "Allow", "Action": "s3:DeleteObject",
                 "Resource": f"{v[1]}/releases/*"},
            ],
        })), opts=opts)
