"""AWS target, domain half: the certificate for hosting.domain, its DNS records with a hosted zone, HTTP → HTTPS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws


def certificate(name: str, domain: str, hosting: Any, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """The ARN of an issued certificate: the one hosting.aws names, or a new ACM one validated in the zone."""
    if hosting.certificate_arn:
        return pulumi.Output.from_input(hosting.certificate_arn)
    issued = aws.acm.Certificate(f"{name}-certificate", domain_name=domain, validation_method="DNS", opts=opts)
    option = issued.domain_validation_options.apply(lambda options: options[0])
    record = aws.route53.Record(
        f"{name}-certificate-validation", zone_id=hosting.hosted_zone_id,
        name=option.apply(lambda o: str(o.resource_record_name)),
        type=option.apply(lambda o: str(o.resource_record_type)),
        records=[option.apply(lambda o: str(o.resource_record_value))], ttl=300, allow_overwrite=True, opts=opts)
    # The environment's HTTPS listener needs an ISSUED certificate; this waits for ACM to issue it.
    validation = aws.acm.CertificateValidation(f"{name}-certificate", certificate_arn=issued.arn,
                                               validation_record_fqdns=[record.fqdn], opts=opts)
    return validation.certificate_arn


def site_record(name: str, domain: str, zone_id: str, cname: pulumi.Output[str], opts: pulumi.ResourceOptions) -> None:
    """domain → the environment's CNAME in the zone Siteline manages (without a zone, the DNS owner points it)."""
    aws.route53.Record(f"{name}-domain", zone_id=zone_id, name=domain, type="CNAME", records=[cname], ttl=300,
                       opts=opts)


def redirect_http(name: str, domain: str, load_balancers: pulumi.Output[Sequence[str]],
                  opts: pulumi.ResourceOptions) -> aws.lb.Listener:
    """Port 80 of the environment's load balancer answers only with a permanent redirect to https://domain.

    EB's option settings cannot express a redirect (its listener rules only forward to a process), so the
    environment's own port-80 listener is disabled (aws:elbv2:listener:default) and this one takes the port.
    """
    # For an application load balancer, EB lists the load balancer's ARN.
    return aws.lb.Listener(
        f"{name}-http-redirect", load_balancer_arn=load_balancers.apply(lambda arns: arns[0]), port=80,
        protocol="HTTP", default_actions=[aws.lb.ListenerDefaultActionArgs(
            type="redirect", redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                protocol="HTTPS", port="443", host=domain, status_code="HTTP_301"))],
        opts=opts)
