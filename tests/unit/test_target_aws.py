"""Target aws under mocks: Elastic Beanstalk with immutable deployments, private RDS, secrets only as ARNs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components import outputs
from components.targets import aws as aws_target
from tests.computed import stable
from tests.computed.aws import load_balancer_arn
from tests.computed.random import password as random_password
from tests.conftest import MARKER_VALUES, MARKERS, build_package
from tests.harness import Evaluation, Registered, evaluate, is_secret, plain_text

ENVIRONMENT = "aws:elasticbeanstalk/environment:Environment"
RDS = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECRET_NAMES = {"ADMIN_TOKEN", "CRM_API_KEY", "SMTP_PASSWORD", "DATABASE_URL"}
REGION = {"region": "eu-west-1"}
# Live pins its platform (check() requires it); the lookup elsewhere answers v4.5.2.
LIVE_PLATFORM = "64bit Amazon Linux 2023 v4.5.1 running Python 3.11"
LIVE = {"solutionStack": LIVE_PLATFORM}
APPLICATION = "aws:elasticbeanstalk/application:Application"
VERSION = "aws:elasticbeanstalk/applicationVersion:ApplicationVersion"
PACKAGE = "aws:s3/bucketObjectv2:BucketObjectv2"
BUCKET = "aws:s3/bucket:Bucket"
LISTENER = "aws:lb/listener:Listener"


def aws_overrides(stack: str, hosting: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The committed stack, moved to aws: AWS sizes instead of the committed Azure SKUs."""
    values: dict[str, Any] = {"siteline:target": "aws", "siteline:hosting.aws": {**REGION, **(hosting or {})},
                              "siteline:hosting.size": None, "siteline:database.size": None}
    if stack == "dev":
        values["siteline:smtp.host"] = "smtp.example.com"  # no built-in mail sink on AWS
    if stack == "live":
        values.update({"siteline:hosting.size": "t3.medium", "siteline:database.size": "db.m7g.large"})
    values.update(extra or {})
    return values


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A package of our own (absolute path), so concurrent rebuilds of dist/ cannot race these tests."""
    return build_package("1.4.0", tmp_path_factory.mktemp("aws-release"))


def upstream(stack: str, release: dict[str, str]) -> dict[str, dict[str, Any]]:
    if stack == "test":
        return {"organization/siteline/dev": {"release": release, "contract": 1}}
    return {"organization/siteline/test": {"release": release, "verifiedRelease": release, "contract": 1}}


def run(stack: str, release: dict[str, str], hosting: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None) -> Evaluation:
    if stack == "dev":
        return evaluate("dev", overrides=aws_overrides(stack, hosting, extra))
    return evaluate(stack, overrides=aws_overrides(stack, hosting, extra), secrets=MARKERS,
                    upstream=upstream(stack, release))


@pytest.fixture(scope="module")
def dev(dev_package: dict[str, str]) -> Evaluation:
    evaluation = run("dev", dev_package)
    assert evaluation.error is None, evaluation.error
    return evaluation


@pytest.fixture(scope="module")
def test_stack(release: dict[str, str]) -> Evaluation:
    evaluation = run("test", release)
    assert evaluation.error is None, evaluation.error
    return evaluation


@pytest.fixture(scope="module")
def live(release: dict[str, str]) -> Evaluation:
    evaluation = run("live", release, {**LIVE, "hostedZoneId": "Z0123456789ABCDEFGHIJ"})
    assert evaluation.error is None, evaluation.error
    return evaluation


@pytest.fixture(scope="module", params=["dev", "test", "live"])
def each(request: pytest.FixtureRequest) -> Evaluation:
    return request.getfixturevalue({"dev": "dev", "test": "test_stack", "live": "live"}[request.param])


def options(evaluation: Evaluation) -> dict[tuple[str, str], Any]:
    """The environment's option settings as {(namespace, name): value}, secret wrappers kept."""
    settings = evaluation.one(ENVIRONMENT).inputs["settings"]
    return {(s["namespace"], s["name"]): s["value"] for s in settings}


def by_id(evaluation: Evaluation, mock_id: str) -> Registered:
    """The resource whose mocked id is `mock_id` (the mocks answer `<name>-id`)."""
    return evaluation.named(mock_id.removesuffix("-id"))


# --- every role -------------------------------------------------------------------------------

def test_registers_the_whole_environment(each: Evaluation) -> None:
    types = {r.type for r in each.resources}
    for expected in ("siteline:targets:Aws", "pulumi:providers:aws", "aws:s3/bucket:Bucket",
                     "aws:s3/bucketObjectv2:BucketObjectv2", "aws:elasticbeanstalk/application:Application",
                     "aws:elasticbeanstalk/applicationVersion:ApplicationVersion", ENVIRONMENT, RDS,
                     "aws:rds/subnetGroup:SubnetGroup", "aws:iam/instanceProfile:InstanceProfile",
                     "aws:secretsmanager/secret:Secret", "aws:secretsmanager/secretVersion:SecretVersion"):
        assert expected in types, f"{expected} missing"
    target = each.one("siteline:targets:Aws")
    children = [r for r in each.resources if r.custom and r.parent == target.urn]
    assert len(children) > 20, "every AWS resource is a child of the target component"


def test_outputs_follow_the_contract(each: Evaluation) -> None:
    values = each.plain_outputs
    outputs.validate(values)
    database = values["database"]
    rds = each.one(RDS)
    assert database["id"].startswith(rds.name) and database["host"].endswith(".rds.amazonaws.com")
    assert database["port"] == 5432 and database["engine"] == "postgres" and database["region"] == "eu-west-1"
    assert values["smtp"] == {"host": "smtp.example.com", "port": 587,
                              "mode": each.plain_outputs["smtp"]["mode"]}


def test_zero_downtime_deployment_with_health_based_rollback(each: Evaluation) -> None:
    settings = options(each)
    assert settings[("aws:elasticbeanstalk:command", "DeploymentPolicy")] in ("Immutable", "TrafficSplitting")
    assert settings[("aws:elasticbeanstalk:command", "IgnoreHealthCheck")] == "false"
    assert settings[("aws:autoscaling:updatepolicy:rollingupdate", "RollingUpdateType")] == "Immutable"
    assert settings[("aws:elasticbeanstalk:healthreporting:system", "SystemType")] == "enhanced"
    assert settings[("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath")] == "/healthz"
    assert settings[("aws:elasticbeanstalk:environment", "EnvironmentType")] == "LoadBalanced"
    assert settings[("aws:elasticbeanstalk:environment", "LoadBalancerType")] == "application"


def test_environment_runs_the_release_on_the_runtime_platform(each: Evaluation) -> None:
    environment = each.one(ENVIRONMENT).plain_inputs
    version = each.one(VERSION).plain_inputs
    release = each.plain_outputs["release"]
    suffix = each.named("aws-version-suffix")
    assert version["name"] == f"{release['version']}-{release['sha256'][:12]}-{stable(suffix.name, 16)}"
    # The suffix is new whenever the release changes, so going back to a release EB still keeps is a new label.
    assert suffix.plain_inputs["keepers"] == {"version": release["version"], "sha256": release["sha256"]}
    assert environment["version"] == version["name"]
    expected = LIVE_PLATFORM if each.stack == "live" else "64bit Amazon Linux 2023 v4.5.2 running Python 3.11"
    assert environment["solutionStackName"] == expected
    package = each.one(PACKAGE).plain_inputs
    assert package["key"] == f"releases/site-{version['name']}.zip" and package["checksumAlgorithm"] == "SHA256"
    assert Path(package["source"]["path"]).name == Path(release["package"]).name


def test_bundle_bucket_is_private_encrypted_and_versioned(each: Evaluation) -> None:
    block = each.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").plain_inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                         "restrictPublicBuckets"))
    encryption = each.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert encryption.plain_inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    versioning = each.one("aws:s3/bucketVersioning:BucketVersioning").plain_inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    ownership = each.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").plain_inputs
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    policy = json.loads(each.one("aws:s3/bucketPolicy:BucketPolicy").plain_inputs["policy"])
    assert policy["Statement"][0]["Effect"] == "Deny"
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket = each.one("aws:s3/bucket:Bucket").plain_inputs
    assert "acl" not in bucket and "policy" not in bucket


def test_security_groups_chain_internet_to_lb_to_instances_to_database(each: Evaluation) -> None:
    groups = {r.name.rsplit("-", 1)[-1]: f"{r.name}-id" for r in each.of_type("aws:ec2/securityGroup:SecurityGroup")}
    assert set(groups) == {"lb", "instances", "db"}
    ingress: dict[str, list[dict[str, Any]]] = {role: [] for role in groups}
    for rule in each.of_type(INGRESS):
        owner = next(role for role, group in groups.items() if rule.plain_inputs["securityGroupId"] == group)
        ingress[owner].append(rule.plain_inputs)
    assert sorted((r["fromPort"], r.get("cidrIpv4") or r.get("cidrIpv6")) for r in ingress["lb"]) == [
        (80.0, "0.0.0.0/0"), (80.0, "::/0"), (443.0, "0.0.0.0/0"), (443.0, "::/0")]
    assert [(r["fromPort"], r["referencedSecurityGroupId"]) for r in ingress["instances"]] == [(80.0, groups["lb"])]
    assert [(r["fromPort"], r["referencedSecurityGroupId"]) for r in ingress["db"]] == [(5432.0, groups["instances"])]
    for rules in (ingress["instances"], ingress["db"]):
        assert not any("cidrIpv4" in r or "cidrIpv6" in r for r in rules), "only security groups may reach these"
    lb_egress = [r.plain_inputs for r in each.of_type(EGRESS) if r.plain_inputs["securityGroupId"] == groups["lb"]]
    assert lb_egress == [{**lb_egress[0], "referencedSecurityGroupId": groups["instances"]}]
    settings = options(each)
    assert settings[("aws:elbv2:loadbalancer", "SecurityGroups")] == groups["lb"]
    assert settings[("aws:autoscaling:launchconfiguration", "SecurityGroups")] == groups["instances"]
    assert settings[("aws:autoscaling:launchconfiguration", "DisableDefaultEC2SecurityGroup")] == "true"
    assert each.one(RDS).plain_inputs["vpcSecurityGroupIds"] == [groups["db"]]


def test_database_is_encrypted_and_private(each: Evaluation) -> None:
    rds = each.one(RDS).plain_inputs
    assert rds["engine"] == "postgres" and rds["storageEncrypted"] is True and rds["publiclyAccessible"] is False
    assert is_secret(each.one(RDS).inputs["password"]), "the master password travels only as a secret"


def test_secrets_reach_the_site_only_as_secret_manager_references(each: Evaluation) -> None:
    settings = options(each)
    plain = {name for (namespace, name) in settings if namespace == "aws:elasticbeanstalk:application:environment"}
    referenced = {name: value for (namespace, name), value in settings.items()
                  if namespace == "aws:elasticbeanstalk:application:environmentsecrets"}
    expected = SECRET_NAMES if each.stack != "dev" else {"DATABASE_URL"}
    assert set(referenced) == expected and not plain & SECRET_NAMES
    secret_arns = {r.name: None for r in each.of_type("aws:secretsmanager/secret:Secret")}
    assert len(secret_arns) == len(expected)
    assert all(value.startswith("arn:aws:secretsmanager:eu-west-1:") for value in referenced.values())
    for version in each.of_type("aws:secretsmanager/secretVersion:SecretVersion"):
        assert is_secret(version.inputs["secretString"]), f"{version.name} stores its value unwrapped"
    # A changed secret (a new version id) changes the environment, so instances are replaced and read it.
    versions = settings[("aws:elasticbeanstalk:application:environment", "SITELINE_SECRET_VERSIONS")].split(",")
    assert len(versions) == len(expected) and all(versions)
    # The instance role reads exactly these secrets: no wildcard, nothing of another stack.
    policy = json.loads(each.named("instance-site").plain_inputs["policy"])
    reads = next(s for s in policy["Statement"] if s["Action"] == "secretsmanager:GetSecretValue")
    assert sorted(reads["Resource"]) == sorted(referenced.values())
    assert "*" not in json.dumps(policy).replace("/*", "")


def test_no_secret_marker_in_plain_text(each: Evaluation) -> None:
    database_password = random_password(f"{each.stack}-aws-db-password")
    markers = (MARKER_VALUES if each.stack != "dev" else []) + [database_password]
    for resource in each.resources:
        visible = plain_text(resource.inputs)
        for marker in markers:
            assert marker not in visible, f"{marker} in plain text in {resource.type} {resource.name}"
    for marker in markers:
        assert marker not in plain_text(each.outputs)
    # The scan is not vacuous: the markers are in the inputs, wrapped as secrets.
    everything = json.dumps([r.inputs for r in each.resources])
    assert all(marker in everything for marker in markers)


# --- per role ---------------------------------------------------------------------------------

def test_dev_and_test_are_small_and_unprotected(dev: Evaluation, test_stack: Evaluation) -> None:
    for evaluation, db_class in ((dev, "db.t4g.micro"), (test_stack, "db.t4g.small")):
        rds = evaluation.one(RDS)
        assert rds.protect is False and rds.plain_inputs["deletionProtection"] is False
        assert rds.plain_inputs["backupRetentionPeriod"] == 7.0 and rds.plain_inputs["multiAz"] is False
        assert rds.plain_inputs["instanceClass"] == db_class
        settings = options(evaluation)
        assert settings[("aws:ec2:instances", "InstanceTypes")] == "t3.small"
        assert settings[("aws:autoscaling:asg", "MinSize")] == "1"
        assert ("aws:elbv2:listener:443", "Protocol") not in settings
        assert evaluation.plain_outputs["url"].startswith("http://") and evaluation.plain_outputs["url"].endswith(
            ".eu-west-1.elasticbeanstalk.com")
        bucket = evaluation.one(BUCKET).plain_inputs
        assert bucket["forceDestroy"] is True
        for type_token in (ENVIRONMENT, APPLICATION, BUCKET):
            assert evaluation.one(type_token).protect is False, f"{type_token} protected outside live"
        # No domain: nothing to redirect to, EB's own port-80 listener serves.
        assert not evaluation.of_type(LISTENER)
        assert ("aws:elbv2:listener:default", "ListenerEnabled") not in settings


def test_live_database_is_protected_and_backed_up(live: Evaluation) -> None:
    rds = live.one(RDS)
    inputs = rds.plain_inputs
    assert rds.protect is True
    assert inputs["deletionProtection"] is True
    assert inputs["backupRetentionPeriod"] == 35.0
    assert inputs["skipFinalSnapshot"] is False and inputs["finalSnapshotIdentifier"].startswith("siteline-live-final-")
    assert inputs["multiAz"] is True, "the committed live stack sets database.highAvailability"
    assert inputs["instanceClass"] == "db.m7g.large" and inputs["allocatedStorage"] == 128.0
    assert inputs["applyImmediately"] is False and inputs["allowMajorVersionUpgrade"] is False


def test_live_serves_https_on_its_domain(live: Evaluation) -> None:
    settings = options(live)
    validation = live.one("aws:acm/certificateValidation:CertificateValidation").plain_inputs
    assert settings[("aws:elbv2:listener:443", "Protocol")] == "HTTPS"
    assert settings[("aws:elbv2:listener:443", "SSLCertificateArns")] == validation["certificateArn"]
    assert live.one("aws:acm/certificate:Certificate").plain_inputs["domainName"] == "www.example.com"
    record = live.named("live-aws-domain").plain_inputs
    assert record["type"] == "CNAME" and record["records"][0].endswith(".elasticbeanstalk.com")
    assert live.plain_outputs["url"] == "https://www.example.com"
    assert settings[("aws:autoscaling:asg", "MinSize")] == "2"
    assert settings[("aws:ec2:instances", "InstanceTypes")] == "t3.medium"
    assert live.one("aws:s3/bucket:Bucket").plain_inputs["forceDestroy"] is False


def test_an_issued_certificate_is_used_as_given(release: dict[str, str]) -> None:
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"
    evaluation = run("live", release, {**LIVE, "certificateArn": arn})
    assert evaluation.error is None, evaluation.error
    assert options(evaluation)[("aws:elbv2:listener:443", "SSLCertificateArns")] == arn
    assert not evaluation.of_type("aws:acm/certificate:Certificate")
    assert not evaluation.of_type("aws:route53/record:Record"), "without a zone, the DNS owner points the domain"
    assert evaluation.one(LISTENER).plain_inputs["defaultActions"][0]["type"] == "redirect"


def test_live_redirects_http_to_https(live: Evaluation) -> None:
    settings = options(live)
    # EB's port-80 listener (which would forward plain HTTP to the site) is off ...
    assert settings[("aws:elbv2:listener:default", "ListenerEnabled")] == "false"
    # ... and port 80 of the environment's own load balancer answers with a permanent redirect to the domain.
    listener = live.one(LISTENER)
    inputs = listener.plain_inputs
    environment = live.one(ENVIRONMENT)
    assert inputs["loadBalancerArn"] == load_balancer_arn(environment.name)
    assert inputs["port"] == 80.0 and inputs["protocol"] == "HTTP"
    [action] = inputs["defaultActions"]
    assert action["type"] == "redirect" and "targetGroupArn" not in action and "forward" not in action
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "host": "www.example.com",
                                  "statusCode": "HTTP_301"}
    assert listener.parent == live.one("siteline:targets:Aws").urn


def test_live_application_environment_and_bucket_are_protected(live: Evaluation) -> None:
    for type_token in (ENVIRONMENT, APPLICATION, BUCKET, RDS):
        assert live.one(type_token).protect is True, f"{type_token} is not protected on live"


def test_releases_leave_their_version_behind_for_rollback(each: Evaluation) -> None:
    # A new release replaces these; retained, the previous version stays in EB as a rollback target.
    assert each.one(VERSION).retain_on_delete is True
    assert each.one(PACKAGE).retain_on_delete is True
    # EB's lifecycle removes all but the newest 20 versions, and their bundles.
    lifecycle = each.one(APPLICATION).plain_inputs["appversionLifecycle"]
    service_role = each.named("aws-service")
    role_arn = f"arn:aws:iam::123456789012:role/{service_role.name}-{stable(service_role.name, 7)}"
    assert lifecycle == {"serviceRole": role_arn,
                         "maxCount": float(aws_target.KEEP_VERSIONS), "deleteSourceFromS3": True}
    # The service role may delete this application's versions and bundles, nothing else.
    policy = json.loads(each.named("service-version-cleanup").plain_inputs["policy"])
    assert each.named("service-version-cleanup").plain_inputs["role"] == f"{service_role.name}-id"
    grants = {s["Sid"]: s for s in policy["Statement"]}
    application = each.one(APPLICATION)
    assert grants["DeleteOldVersions"]["Resource"] == (
        f"arn:aws:elasticbeanstalk:eu-west-1:123456789012:applicationversion/{application.name}-"
        f"{stable(application.name, 7)}/*")
    bucket = each.one(BUCKET)
    assert grants["DeleteOldBundles"] == {"Sid": "DeleteOldBundles", "Effect": "Allow", "Action": "s3:DeleteObject",
                                          "Resource": f"arn:aws:s3:::{bucket.name}-{stable(bucket.name, 7)}"
                                                      "/releases/*"}
    assert all(s["Action"][0].startswith("elasticbeanstalk:Describe") for s in policy["Statement"]
               if s["Resource"] == "*")
    # A deleted bundle becomes a noncurrent S3 version (the bucket is versioned): it expires after 30 days.
    [rule] = each.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").plain_inputs["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": "releases/"}
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 30.0}
    assert rule["expiration"] == {"expiredObjectDeleteMarker": True}


def test_own_network_and_traffic_splitting(release: dict[str, str]) -> None:
    public = ["subnet-0a0000000000000a1", "subnet-0a0000000000000a2"]
    private = ["subnet-0b0000000000000b1", "subnet-0b0000000000000b2"]
    evaluation = run("test", release, {"vpcId": "vpc-0c0000000000000c1", "subnetIds": public,
                                       "privateSubnetIds": private, "deploymentPolicy": "TrafficSplitting",
                                       "solutionStack": "64bit Amazon Linux 2023 v4.4.0 running Python 3.11"})
    assert evaluation.error is None, evaluation.error
    settings = options(evaluation)
    assert settings[("aws:ec2:vpc", "VPCId")] == "vpc-0c0000000000000c1"
    assert settings[("aws:ec2:vpc", "ELBSubnets")] == ",".join(public)
    assert settings[("aws:ec2:vpc", "Subnets")] == ",".join(private)
    assert settings[("aws:ec2:vpc", "AssociatePublicIpAddress")] == "false"
    assert settings[("aws:elasticbeanstalk:command", "DeploymentPolicy")] == "TrafficSplitting"
    assert settings[("aws:elasticbeanstalk:trafficsplitting", "NewVersionPercent")] == "10"
    assert evaluation.one("aws:rds/subnetGroup:SubnetGroup").plain_inputs["subnetIds"] == private
    assert evaluation.one(ENVIRONMENT).plain_inputs["solutionStackName"].endswith("v4.4.0 running Python 3.11")
    for group in evaluation.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert group.plain_inputs["vpcId"] == "vpc-0c0000000000000c1"


def test_default_vpc_instances_get_public_addresses_but_no_open_port(dev: Evaluation) -> None:
    settings = options(dev)
    assert settings[("aws:ec2:vpc", "AssociatePublicIpAddress")] == "true"
    assert settings[("aws:ec2:vpc", "Subnets")] == settings[("aws:ec2:vpc", "ELBSubnets")]
    assert settings[("aws:autoscaling:launchconfiguration", "DisableIMDSv1")] == "true"


# --- config-time errors -----------------------------------------------------------------------

def error_text(evaluation: Evaluation) -> str:
    assert evaluation.error is not None, "expected a config error"
    assert not evaluation.of_type(ENVIRONMENT), "nothing may be registered after a config error"
    return str(evaluation.error)


def test_region_is_required(release: dict[str, str]) -> None:
    text = error_text(run("test", release, extra={"siteline:hosting.aws": {}}))
    assert "siteline:hosting.aws.region: is required on the aws target" in text


def test_azure_sizes_are_refused_with_the_fix(release: dict[str, str]) -> None:
    sizes = {"siteline:hosting.size": "S1", "siteline:database.size": "Standard_B1ms"}
    text = error_text(run("test", release, extra=sizes))
    assert "siteline:hosting.size: is 'S1', not an EC2 instance type" in text
    assert "siteline:database.size: is 'Standard_B1ms', not an RDS instance class" in text


def test_live_needs_a_pinned_platform(release: dict[str, str]) -> None:
    text = error_text(run("live", release, {"hostedZoneId": "Z0123456789ABCDEFGHIJ"}))
    assert "siteline:hosting.aws.solutionStack: is required on live" in text
    assert "aws elasticbeanstalk list-available-solution-stacks --region eu-west-1" in text
    assert "pulumi config set --path 'siteline:hosting.aws.solutionStack'" in text
    assert "running Python 3.11" in text


def test_domain_needs_a_certificate_or_a_zone(release: dict[str, str]) -> None:
    text = error_text(run("live", release))
    assert "siteline:hosting.aws.certificateArn: is needed for HTTPS on www.example.com" in text


def test_subnets_need_their_vpc_and_two_zones(release: dict[str, str]) -> None:
    text = error_text(run("test", release, {"subnetIds": ["subnet-0a0000000000000a1"]}))
    assert "siteline:hosting.aws.subnetIds: needs hosting.aws.vpcId" in text
    assert "must list at least two subnets" in text


def test_mail_sink_needs_a_relay_on_aws(dev_package: dict[str, str]) -> None:
    assert aws_target.BUILTIN_MAIL_SINK is False
    text = error_text(evaluate("dev", overrides={"siteline:target": "aws", "siteline:hosting.aws": REGION}))
    assert "siteline:smtp.host: is required for smtp.mode sink on the aws target" in text


def test_a_package_that_does_not_match_its_sha256_fails(release: dict[str, str]) -> None:
    tampered = {**release, "sha256": "0" * 64}
    evaluation = evaluate("test", overrides=aws_overrides("test"), secrets=MARKERS,
                          upstream={"organization/siteline/dev": {"release": tampered, "contract": 1}})
    assert evaluation.error is not None and "not the release's " + "0" * 64 in str(evaluation.error)
