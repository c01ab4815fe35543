"""Target `aws`: Elastic Beanstalk (immutable deployments, enhanced health) with RDS PostgreSQL."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

import pulumi
import pulumi_aws as aws
from pydantic import BaseModel, ConfigDict, Field

from components import outputs
from components.targets import Problem, TargetArgs
from components.targets._aws_access import access, version_cleanup
from components.targets._aws_bundle import bundle, store
from components.targets._aws_database import database, subnet_group
from components.targets._aws_domain import certificate, redirect_http, site_record
from components.targets._aws_network import network
from components.targets._aws_refresh import restored, source_instance

# A masked copy comes from an RDS snapshot of another aws stack's instance (same account and region).
REFRESH_SOURCES = ("aws",)
BUILTIN_MAIL_SINK = False  # no mail catcher on Elastic Beanstalk: every mode needs smtp.host
NEEDS_SSH_KEY = False

# What a role gets when hosting.size is not set.
DEFAULT_INSTANCE_TYPE = {"dev": "t3.small", "review": "t3.small", "test": "t3.small", "live": "t3.medium"}
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
DB_CLASS_PATTERN = r"^db\.[a-z0-9-]+\.[a-z0-9]+$"
SUBNET = r"^subnet-[0-9a-f]{8,17}$"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Application versions (and their bundles) EB keeps: rollback targets; older ones its lifecycle deletes.
KEEP_VERSIONS = 20


class HOSTING(BaseModel):
    """`siteline:hosting.aws`: the region, optionally the network, the platform and the certificate."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    region: Optional[str] = Field(default=None, pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
    vpc_id: Optional[str] = Field(default=None, alias="vpcId", pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnet_ids: tuple[str, ...] = Field(default=(), alias="subnetIds")
    private_subnet_ids: tuple[str, ...] = Field(default=(), alias="privateSubnetIds")
    solution_stack: Optional[str] = Field(default=None, alias="solutionStack", min_length=1)
    certificate_arn: Optional[str] = Field(default=None, alias="certificateArn", pattern=r"^arn:aws[a-z-]*:acm:")
    hosted_zone_id: Optional[str] = Field(default=None, alias="hostedZoneId", pattern=r"^Z[A-Z0-9]{1,31}$")
    deployment_policy: Literal["Immutable", "TrafficSplitting"] = Field(default="Immutable", alias="deploymentPolicy")
    max_instances: Optional[int] = Field(default=None, alias="maxInstances", ge=1, le=30)


def _fix(path: str, example: str) -> str:
    return f"pulumi config set --path 'siteline:{path}' {example}"


def check(config: Any, hosting: HOSTING) -> list[Problem]:
    """What Elastic Beanstalk and RDS cannot take, said at preview."""
    found: list[Problem] = []
    if not hosting.region:
        found.append(("hosting.aws.region", "is required on the aws target", _fix("hosting.aws.region", "eu-west-1")))
    for key, subnets in (("subnetIds", hosting.subnet_ids), ("privateSubnetIds", hosting.private_subnet_ids)):
        if subnets and not hosting.vpc_id:
            found.append((f"hosting.aws.{key}", "needs hosting.aws.vpcId (the VPC the subnets belong to)",
                          _fix("hosting.aws.vpcId", "vpc-0123456789abcdef0")))
        if subnets and len(set(subnets)) < 2:
            found.append((f"hosting.aws.{key}", "must list at least two subnets in different availability zones "
                          "(the load balancer and the database subnet group need two)",
                          _fix(f"hosting.aws.{key}[1]", "subnet-0123456789abcdef1")))
        for index, subnet in enumerate(subnets):
            if not re.fullmatch(SUBNET, subnet):
                found.append((f"hosting.aws.{key}[{index}]", f"is not a subnet id ({subnet!r})",
                              _fix(f"hosting.aws.{key}[{index}]", "subnet-0123456789abcdef0")))
    if hosting.private_subnet_ids and not hosting.subnet_ids:
        found.append(("hosting.aws.subnetIds", "is required with privateSubnetIds (the load balancer's public subnets)",
                      _fix("hosting.aws.subnetIds[0]", "subnet-0123456789abcdef0")))
    size = config.hosting.size
    if size and (not re.fullmatch(INSTANCE_TYPE_PATTERN, size) or size.startswith("db.")):
        found.append(("hosting.size", f"is {size!r}, not an EC2 instance type", _fix("hosting.size", "t3.small")))
    db_size = config.database.size
    if db_size and not re.fullmatch(DB_CLASS_PATTERN, db_size):
        found.append(("database.size", f"is {db_size!r}, not an RDS instance class",
                      _fix("database.size", "db.t4g.small")))
    if hosting.max_instances is not None and hosting.max_instances < config.hosting.instances:
        found.append(("hosting.aws.maxInstances", f"is below hosting.instances ({config.hosting.instances})",
                      _fix("hosting.aws.maxInstances", str(config.hosting.instances))))
    if config.hosting.domain and not (hosting.certificate_arn or hosting.hosted_zone_id):
        found.append(("hosting.aws.certificateArn", f"is needed for HTTPS on {config.hosting.domain}: ACM cannot "
                      "issue a certificate without DNS validation", "set hosting.aws.certificateArn to an issued "
                      "certificate, or hosting.aws.hostedZoneId to the Route 53 zone of the domain"))
    if config.role == "live" and not hosting.solution_stack:
        python = config.site.runtime.partition(":")[2] or "3.11"
        found.append(("hosting.aws.solutionStack", "is required on live: without it every new Elastic Beanstalk "
                      "platform release is a diff, and the next update deploys it unplanned",
                      "find the current platform with `aws elasticbeanstalk list-available-solution-stacks "
                      f"--region {hosting.region or '<region>'} --query \"SolutionStacks[?contains(@, 'Amazon Linux "
                      f"2023') && ends_with(@, 'running Python {python}')]\"`, then " + _fix(
                          "hosting.aws.solutionStack", f"'64bit Amazon Linux 2023 v4.5.2 running Python {python}'")))
    if (hosting.certificate_arn or hosting.hosted_zone_id) and not config.hosting.domain:
        found.append(("hosting.domain", "is required with hosting.aws.certificateArn or hostedZoneId",
                      _fix("hosting.domain", "www.example.com")))
    return found


def _solution_stack(runtime: str, hosting: HOSTING, invoke: pulumi.InvokeOutputOptions) -> pulumi.Input[str]:
    if hosting.solution_stack:
        return hosting.solution_stack
    # Outside live (check() requires a pin there) the newest platform is looked up on every run: a new
    # platform release shows as a diff, and the next update moves the environment onto it.
    version = runtime.split(":")[1].replace(".", r"\.")
    return aws.elasticbeanstalk.get_solution_stack_output(
        most_recent=True, name_regex=rf"^64bit Amazon Linux 2023 (.*) running Python {version}$", opts=invoke).name


def _option(namespace: str, name: str, value: pulumi.Input[str]) -> aws.elasticbeanstalk.EnvironmentSettingArgs:
    return aws.elasticbeanstalk.EnvironmentSettingArgs(namespace=namespace, name=name, value=value)


class Target(pulumi.ComponentResource):
    url: pulumi.Output[str]
    database: pulumi.Output[dict[str, Any]]
    smtp: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: TargetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        settings = args.settings
        cfg = settings.config
        hosting: HOSTING = settings.target_hosting
        copy = args.refresh
        # Checked before anything is declared: a source RDS cannot copy here (other region, no instance id) is refused.
        source_id = source_instance(copy, str(hosting.region)) if copy is not None else None
        super().__init__("siteline:targets:Aws", name, None, opts)
        live = cfg.role == "live"
        # One explicit provider: the region comes from hosting.aws, and every resource is tagged with its stack.
        provider = aws.Provider(f"{name}-provider", region=hosting.region, default_tags={"tags": {
            "siteline:project": settings.project, "siteline:stack": settings.stack, "siteline:role": cfg.role}},
            opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        invoke = pulumi.InvokeOutputOptions(parent=self, provider=provider)

        net = network(name, hosting, child, invoke)
        subnets = subnet_group(name, settings.stack, net.private_subnets, child)
        # With refreshFrom the masked copy is the stack's database (the stack's own instance is then not declared,
        # so it is deleted after the first switch, like every earlier copy).
        db = (restored(name, cfg, settings.stack, copy, source_id, str(hosting.region), subnets, net, child)
              if copy is not None and source_id is not None
              else database(name, cfg, settings.stack, subnets, net.database, child))
        # Live's application, bucket and environment are protected like its database: pulumi destroy or a
        # replacement cannot delete them (the counterpart of the Azure target's CanNotDelete lock).
        kept = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=live))
        bundles = store(name, live, child)
        app_config = args.app_config.extended(
            # The package's Procfile runs these (see docs/targets/aws.md): migrate, then start.
            plain={"PORT": str(cfg.site.port), "SITELINE_MIGRATE": cfg.site.migrate, "SITELINE_START": cfg.site.start},
            secret={"DATABASE_URL": db.url})
        partition = aws.get_partition_output(opts=invoke).partition
        # DATABASE_URL gets its new value (so the environment its new version id) only once the copy is masked.
        roles = access(name, settings.stack, live, app_config.secret, bundles.bucket.arn, partition, child,
                       waits={"DATABASE_URL": db.ready})
        application = aws.elasticbeanstalk.Application(
            f"{name}-app", description=f"Siteline {settings.stack} ({cfg.role})",
            # Releases leave their versions behind for rollback; EB deletes all but the newest KEEP_VERSIONS
            # (never one an environment runs), bundles included.
            appversion_lifecycle=aws.elasticbeanstalk.ApplicationAppversionLifecycleArgs(
                service_role=roles.service_role.arn, max_count=KEEP_VERSIONS, delete_source_from_s3=True),
            opts=kept)
        version_cleanup(name, roles.service_role, application.arn, bundles.bucket.arn, child)
        version = bundle(name, args.release, settings.project_dir, application, bundles, child)

        instances = cfg.hosting.instances
        options = [
            _option("aws:elasticbeanstalk:environment", "EnvironmentType", "LoadBalanced"),
            _option("aws:elasticbeanstalk:environment", "LoadBalancerType", "application"),
            _option("aws:elasticbeanstalk:environment", "ServiceRole", roles.service_role.arn),
            _option("aws:ec2:vpc", "VPCId", net.vpc_id),
            _option("aws:ec2:vpc", "Subnets", net.private_subnets.apply(",".join)),
            _option("aws:ec2:vpc", "ELBSubnets", net.public_subnets.apply(",".join)),
            _option("aws:ec2:vpc", "ELBScheme", "public"),
            _option("aws:ec2:vpc", "AssociatePublicIpAddress", str(net.instances_public).lower()),
            _option("aws:ec2:instances", "InstanceTypes", cfg.hosting.size or DEFAULT_INSTANCE_TYPE[cfg.role]),
            _option("aws:autoscaling:asg", "MinSize", str(instances)),
            _option("aws:autoscaling:asg", "MaxSize", str(hosting.max_instances or instances)),
            _option("aws:autoscaling:launchconfiguration", "IamInstanceProfile", roles.instance_profile.name),
            _option("aws:autoscaling:launchconfiguration", "SecurityGroups", net.instances.id),
            # Only our groups: EB's default instance group would open port 80 beyond the load balancer.
            _option("aws:autoscaling:launchconfiguration", "DisableDefaultEC2SecurityGroup", "true"),
            _option("aws:autoscaling:launchconfiguration", "DisableIMDSv1", "true"),
            _option("aws:elbv2:loadbalancer", "SecurityGroups", net.load_balancer.id),
            _option("aws:elbv2:loadbalancer", "ManagedSecurityGroup", net.load_balancer.id),
            # A release or a config change starts new instances beside the old ones; old ones serve until the
            # new ones are healthy, and a failed health check terminates the new ones (the rollback).
            _option("aws:elasticbeanstalk:command", "DeploymentPolicy", hosting.deployment_policy),
            _option("aws:elasticbeanstalk:command", "IgnoreHealthCheck", "false"),
            _option("aws:elasticbeanstalk:command", "Timeout", "1200"),
            _option("aws:autoscaling:updatepolicy:rollingupdate", "RollingUpdateEnabled", "true"),
            _option("aws:autoscaling:updatepolicy:rollingupdate", "RollingUpdateType", "Immutable"),
            _option("aws:elasticbeanstalk:healthreporting:system", "SystemType", "enhanced"),
            _option("aws:elasticbeanstalk:healthreporting:system", "HealthCheckSuccessThreshold", "Ok"),
            _option("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath", cfg.site.health_path),
            _option("aws:elasticbeanstalk:environment:process:default", "MatcherHTTPCode", "200"),
            _option("aws:elasticbeanstalk:environment:process:default", "DeregistrationDelay", "20"),
            _option("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs", "true"),
            _option("aws:elasticbeanstalk:cloudwatch:logs", "RetentionInDays", "90" if live else "7"),
        ]
        if hosting.deployment_policy == "TrafficSplitting":
            options += [_option("aws:elasticbeanstalk:trafficsplitting", "NewVersionPercent", "10"),
                        _option("aws:elasticbeanstalk:trafficsplitting", "EvaluationTime", "5")]
        domain = cfg.hosting.domain
        if domain:
            https = "aws:elbv2:listener:443"
            options += [_option(https, "ListenerEnabled", "true"), _option(https, "Protocol", "HTTPS"),
                        _option(https, "SSLCertificateArns", certificate(name, domain, hosting, child)),
                        _option(https, "SSLPolicy", TLS_POLICY),
                        # Port 80 must only redirect: EB's forwarding listener gives way to redirect_http's.
                        _option("aws:elbv2:listener:default", "ListenerEnabled", "false")]
        # Plain settings are environment properties; secrets are only ARNs, which EB resolves on the instance.
        options += [_option("aws:elasticbeanstalk:application:environment", key, app_config.plain[key])
                    for key in sorted(app_config.plain)]
        options += [_option("aws:elasticbeanstalk:application:environmentsecrets", key, arn)
                    for key, arn in sorted(roles.secret_arns.items())]
        # Instances read secrets only at boot. The version ids (not the values) as a property make a changed
        # secret a configuration change, which replaces the instances immutably with ones that read it.
        options.append(_option("aws:elasticbeanstalk:application:environment", "SITELINE_SECRET_VERSIONS",
                               pulumi.Output.all(*[v.version_id for v in roles.secret_versions]).apply(",".join)))

        environment = aws.elasticbeanstalk.Environment(
            f"{name}-env", application=application.name, tier="WebServer",
            solution_stack_name=_solution_stack(cfg.site.runtime, hosting, invoke),
            version=version.name, settings=options, wait_for_ready_timeout="30m",
            description=f"Siteline {settings.stack} ({cfg.role})",
            # Secrets must hold their values and the database must answer before the first instance boots.
            opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(
                depends_on=[db.instance, *db.ready, *roles.secret_versions])))
        if domain:
            redirect_http(name, domain, environment.load_balancers, child)
            if hosting.hosted_zone_id:
                site_record(name, domain, hosting.hosted_zone_id, environment.cname, child)

        # The URL waits for the environment, so consumers only see it once EB reports the release deployed.
        self.url = environment.cname.apply(lambda cname: f"https://{domain}" if domain else f"http://{cname}")
        self.database = pulumi.Output.all(db.instance.address, db.instance.port, db.instance.identifier).apply(
            lambda v: {"engine": "postgres", "host": v[0], "port": int(v[1]), "name": db.name,
                       "id": v[2], "region": str(hosting.region)})
        self.smtp = pulumi.Output.from_input(outputs.smtp(str(cfg.smtp.host), cfg.smtp.port, cfg.smtp.mode))
        self.register_outputs({"url": self.url, "database": self.database, "smtp": self.smtp,
                               "environment": environment.name, "cname": environment.cname})

