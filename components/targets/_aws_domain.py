"""AWS target, domain half: the certificate for hosting.domain and, with a hosted zone, its DNS records."""

from __future__ import annotations

from typing import Any, Optional

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


def site_record(name: str, domain: str, hosting: Any, cname: pulumi.Output[str],
                opts: pulumi.ResourceOptions) -> Optional[aws.route53.Record]:
    """domain → the environment's CNAME, when Siteline manages the zone (otherwise the owner of the DNS does)."""
    if not hosting.hosted_zone_id:
        return None
    return aws.route53.Record(f"{name}-domain", zone_id=hosting.hosted_zone_id, name=domain, type="CNAME",
                              records=[cname], ttl=300, opts=opts)
