"""AWS target, network half: which VPC and subnets the site uses, and the three security groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

HTTP, HTTPS, POSTGRES = 80, 443, 5432


@dataclass(frozen=True)
class Network:
    vpc_id: pulumi.Output[str]
    public_subnets: pulumi.Output[list[str]]  # the load balancer's
    private_subnets: pulumi.Output[list[str]]  # the instances' and the database's
    instances_public: bool  # no private subnets given: instances need a public IP to reach the internet
    load_balancer: aws.ec2.SecurityGroup
    instances: aws.ec2.SecurityGroup
    database: aws.ec2.SecurityGroup


def _subnets(vpc_id: pulumi.Output[str], default_only: bool,
             invoke: pulumi.InvokeOutputOptions) -> pulumi.Output[list[str]]:
    def lookup(vpc: str) -> pulumi.Output[list[str]]:
        filters = [aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc])]
        if default_only:  # the default VPC's subnets; a named VPC's are all of them
            filters.append(aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]))
        return aws.ec2.get_subnets_output(filters=filters, opts=invoke).ids.apply(sorted)
    # An invoke, not a resource, inside apply: preview and update still declare the same resources.
    return vpc_id.apply(lookup)


def network(name: str, hosting: Any, opts: pulumi.ResourceOptions, invoke: pulumi.InvokeOutputOptions) -> Network:
    """The VPC from hosting.aws (or the account's default VPC), then the security groups chained LB → instances → DB."""
    if hosting.vpc_id:
        vpc_id: pulumi.Output[str] = pulumi.Output.from_input(hosting.vpc_id)
    else:
        vpc_id = aws.ec2.get_vpc_output(default=True, opts=invoke).id
    if hosting.subnet_ids:
        public = pulumi.Output.from_input(list(hosting.subnet_ids))
    else:
        public = _subnets(vpc_id, default_only=not hosting.vpc_id, invoke=invoke)
    private = pulumi.Output.from_input(list(hosting.private_subnet_ids)) if hosting.private_subnet_ids else public

    def group(role: str, description: str) -> aws.ec2.SecurityGroup:
        # No inline rules: each rule is its own resource, and the provider drops AWS's default allow-all egress.
        return aws.ec2.SecurityGroup(f"{name}-{role}", vpc_id=vpc_id, description=description,
                                     tags={"Name": f"{name}-{role}"}, opts=opts)

    load_balancer = group("lb", "Siteline load balancer: HTTP and HTTPS from the internet")
    instances = group("instances", "Siteline instances: HTTP from the load balancer only")
    database = group("db", "Siteline database: PostgreSQL from the instances only")

    def rule(kind: str, label: str, owner: aws.ec2.SecurityGroup, port: int | None, **source: Any) -> None:
        cls = aws.vpc.SecurityGroupIngressRule if kind == "in" else aws.vpc.SecurityGroupEgressRule
        ports = {"ip_protocol": "tcp", "from_port": port, "to_port": port} if port else {"ip_protocol": "-1"}
        cls(f"{name}-{label}", security_group_id=owner.id, description=label.replace("-", " "),
            **ports, **source, opts=opts)

    for port in (HTTP, HTTPS):
        rule("in", f"lb-in-{port}-ipv4", load_balancer, port, cidr_ipv4="0.0.0.0/0")
        rule("in", f"lb-in-{port}-ipv6", load_balancer, port, cidr_ipv6="::/0")
    rule("out", "lb-out-instances", load_balancer, HTTP, referenced_security_group_id=instances.id)
    rule("in", "instances-in-lb", instances, HTTP, referenced_security_group_id=load_balancer.id)
    # Instances install requirements, call the SMTP relay and read Secrets Manager: outbound stays open.
    rule("out", "instances-out-any", instances, None, cidr_ipv4="0.0.0.0/0")
    rule("in", "db-in-instances", database, POSTGRES, referenced_security_group_id=instances.id)

    return Network(vpc_id=vpc_id, public_subnets=public, private_subnets=private,
                   instances_public=not hosting.private_subnet_ids,
                   load_balancer=load_balancer, instances=instances, database=database)
