"""pulumi-aws: what AWS computes (names, ARNs, endpoints) and what the data sources answer, in full shapes."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.computed import stable

ACCOUNT = "123456789012"
REGION = "eu-west-1"
VPC = "vpc-0a1b2c3d4e5f60718"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]


def _auto(name: str) -> str:
    """The provider's autonaming: the resource name plus a random suffix."""
    return f"{name}-{stable(name, 7)}"


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def load_balancer_arn(environment: str) -> str:
    """What EB lists in an environment's loadBalancers for an application load balancer: its ARN."""
    return _arn("elasticloadbalancing", f"loadbalancer/app/awseb--AWSEB-{stable(environment, 12)}/{stable(environment, 16)}")


def outputs(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    kind = type_token.split(":")[-1]
    given = inputs.get("name") or _auto(name)
    if kind == "SecurityGroup":
        return {"arn": _arn("ec2", f"security-group/sg-{stable(name, 17)}"), "name": given, "ownerId": ACCOUNT}
    if kind in ("SecurityGroupIngressRule", "SecurityGroupEgressRule"):
        return {"arn": _arn("ec2", f"security-group-rule/sgr-{stable(name, 17)}"),
                "securityGroupRuleId": f"sgr-{stable(name, 17)}"}
    if kind == "SubnetGroup":
        return {"name": given.lower(), "arn": _arn("rds", f"subgrp:{given.lower()}")}
    if kind == "Instance" and type_token.startswith("aws:rds/"):
        identifier = inputs.get("identifier") or f"{name}-{stable(name, 8)}".lower()
        address = f"{identifier}.c{stable(name, 12)}.{REGION}.rds.amazonaws.com"
        return {"identifier": identifier, "address": address, "endpoint": f"{address}:5432", "port": 5432,
                "arn": _arn("rds", f"db:{identifier}"), "resourceId": f"db-{stable(name, 26).upper()}",
                "hostedZoneId": "Z29XKXDKYMONMX", "engineVersionActual": f"{inputs.get('engineVersion', '16')}.4",
                "status": "available", "masterUserSecrets": []}
    if kind == "Snapshot" and type_token.startswith("aws:rds/"):
        snapshot = inputs["dbSnapshotIdentifier"]
        return {"dbSnapshotArn": _arn("rds", f"snapshot:{snapshot}"), "status": "available", "encrypted": True,
                "engine": "postgres", "engineVersion": "16.4", "allocatedStorage": 32, "port": 5432,
                "kmsKeyId": _arn("kms", f"key/{stable(snapshot, 36)}"), "snapshotType": "manual",
                "storageType": "gp3", "vpcId": VPC, "sourceRegion": REGION, "availabilityZone": f"{REGION}a"}
    if kind == "Cluster" and type_token.startswith("aws:ecs/"):
        return {"name": given, "arn": _arn("ecs", f"cluster/{given}")}
    if kind == "TaskDefinition" and type_token.startswith("aws:ecs/"):
        family = inputs["family"]
        return {"arn": _arn("ecs", f"task-definition/{family}:1"), "arnWithoutRevision": _arn(
            "ecs", f"task-definition/{family}"), "revision": 1}
    if kind == "LogGroup" and type_token.startswith("aws:cloudwatch/"):
        return {"name": given, "arn": _arn("logs", f"log-group:{given}")}
    if kind == "Application" and "elasticbeanstalk" in type_token:
        return {"name": given, "arn": _arn("elasticbeanstalk", f"application/{given}")}
    if kind == "ApplicationVersion":
        return {"arn": _arn("elasticbeanstalk", f"applicationversion/{inputs.get('application')}/{given}")}
    if kind == "Environment" and "elasticbeanstalk" in type_token:
        cname = f"{given}.{REGION}.elasticbeanstalk.com"
        return {"name": given, "cname": cname, "arn": _arn("elasticbeanstalk", f"environment/{inputs.get('application')}/{given}"),
                "endpointUrl": f"awseb-e-{stable(name, 10)}-stack-awsebloa-{stable(name, 12)}.{REGION}.elb.amazonaws.com",
                "allSettings": inputs.get("settings", []), "autoscalingGroups": [f"awseb-{stable(name, 10)}-AWSEBAutoScalingGroup"],
                "instances": [], "launchConfigurations": [], "loadBalancers": [load_balancer_arn(name)],
                "queues": [], "triggers": [], "platformArn": _arn("elasticbeanstalk", "platform/Python 3.11 running on 64bit Amazon Linux 2023/4.5.2", region="")}
    if kind == "Listener" and type_token.startswith("aws:lb/"):
        return {"arn": f"{inputs.get('loadBalancerArn', '').replace(':loadbalancer/', ':listener/')}/{stable(name, 16)}"}
    if kind == "Bucket" and type_token.startswith("aws:s3/"):
        bucket = inputs.get("bucket") or _auto(name).lower()
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                "bucketRegionalDomainName": f"{bucket}.s3.{REGION}.amazonaws.com", "region": REGION,
                "hostedZoneId": "Z1BKCTXD74EZPE"}
    if kind == "BucketObjectv2":
        return {"arn": f"arn:aws:s3:::{inputs.get('bucket')}/{inputs.get('key')}", "versionId": stable(name, 32),
                "etag": stable(name, 32), "checksumSha256": stable(name, 43) + "="}
    if kind == "Secret" and "secretsmanager" in type_token:
        secret_name = f"{inputs['namePrefix']}{stable(name, 26)}" if inputs.get("namePrefix") else given
        return {"name": secret_name, "arn": _arn("secretsmanager", f"secret:{secret_name}-{stable(name, 6)}")}
    if kind == "SecretVersion":
        # A new value is a new version (secretString replaces), with a new id.
        value = json.dumps(inputs.get("secretString"), sort_keys=True, default=str)
        return {"versionId": stable(name + value, 36), "arn": inputs.get("secretId", ""), "versionStages": ["AWSCURRENT"]}
    if kind == "Role" and type_token.startswith("aws:iam/"):
        return {"name": given, "arn": f"arn:aws:iam::{ACCOUNT}:role/{given}", "uniqueId": f"AROA{stable(name, 17).upper()}"}
    if kind == "InstanceProfile":
        return {"name": given, "arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{given}",
                "uniqueId": f"AIPA{stable(name, 17).upper()}"}
    if kind == "RolePolicy":
        return {"name": given}
    if kind == "Certificate" and type_token.startswith("aws:acm/"):
        domain = inputs.get("domainName", "example.com")
        return {"arn": _arn("acm", f"certificate/{stable(name, 36)}"), "status": "PENDING_VALIDATION",
                "domainValidationOptions": [{"domainName": domain, "resourceRecordName": f"_{stable(name, 32)}.{domain}.",
                                             "resourceRecordType": "CNAME",
                                             "resourceRecordValue": f"_{stable(name + 'v', 32)}.acm-validations.aws."}]}
    if kind == "Record" and type_token.startswith("aws:route53/"):
        return {"fqdn": str(inputs.get("name", "")).rstrip(".")}
    return {}


def invoke(token: str, args: dict[str, Any]) -> dict[str, Any]:
    region = args.get("region") or REGION
    if token == "aws:ec2/getVpc:getVpc":
        return {"arn": _arn("ec2", f"vpc/{VPC}", region), "cidrBlock": "172.31.0.0/16",
                "cidrBlockAssociations": [{"associationId": "vpc-cidr-assoc-0a1b2c3d", "cidrBlock": "172.31.0.0/16",
                                           "state": "associated"}],
                "default": bool(args.get("default", True)), "dhcpOptionsId": "dopt-0a1b2c3d", "enableDnsHostnames": True,
                "enableDnsSupport": True, "enableNetworkAddressUsageMetrics": False, "filters": args.get("filters"),
                "id": args.get("id") or VPC, "instanceTenancy": "default", "ipv6AssociationId": "", "ipv6CidrBlock": "",
                "mainRouteTableId": "rtb-0a1b2c3d4e5f60718", "ownerId": ACCOUNT, "region": region, "state": "available",
                "tags": {}}
    if token == "aws:ec2/getSubnets:getSubnets":
        return {"filters": args.get("filters"), "id": region, "ids": list(SUBNETS), "region": region, "tags": args.get("tags")}
    if token == "aws:elasticbeanstalk/getSolutionStack:getSolutionStack":
        python = re.search(r"Python ([0-9\\.]+)", args.get("nameRegex", "")) if args.get("nameRegex") else None
        version = python.group(1).replace("\\", "") if python else "3.11"
        stack = f"64bit Amazon Linux 2023 v4.5.2 running Python {version}"
        return {"id": stack, "mostRecent": args.get("mostRecent"), "name": stack, "nameRegex": args.get("nameRegex"),
                "region": region}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": ACCOUNT, "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/siteline", "id": ACCOUNT,
                "userId": "AROAEXAMPLEID:siteline"}
    if token == "aws:index/getRegion:getRegion":
        return {"description": "Europe (Ireland)", "endpoint": f"ec2.{region}.amazonaws.com", "id": region,
                "name": region, "region": region}
    if token == "aws:index/getPartition:getPartition":
        return {"dnsSuffix": "amazonaws.com", "id": "aws", "partition": "aws", "reverseDnsPrefix": "com.amazonaws"}
    raise NotImplementedError(f"no mock for invoke {token}; add it to tests/computed/aws.py")
