"""AWS target, release half: a private bucket for source bundles, the package in it, one EB version per release."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.release import Release, package_asset


@dataclass(frozen=True)
class Bundle:
    bucket: aws.s3.Bucket
    version: aws.elasticbeanstalk.ApplicationVersion


def label(version: str, sha256: str) -> str:
    """The EB version label: the release version plus a short sha, so a rebuilt package gets a new label."""
    return f"{version}-{sha256[:12]}"


def bundle(name: str, live: bool, release: Release, project_dir: Path, application: aws.elasticbeanstalk.Application,
           opts: pulumi.ResourceOptions) -> Bundle:
    # Outside live the bucket may be emptied on destroy; live's history of bundles stays.
    bucket = aws.s3.Bucket(f"{name}-bundles", force_destroy=not live, opts=opts)
    aws.s3.BucketPublicAccessBlock(f"{name}-bundles", bucket=bucket.id, block_public_acls=True,
                                   block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
                                   opts=opts)
    aws.s3.BucketOwnershipControls(f"{name}-bundles", bucket=bucket.id,
                                   rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts)
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-bundles", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}, "bucket_key_enabled": True}],
        opts=opts)
    versioning = aws.s3.BucketVersioning(f"{name}-bundles", bucket=bucket.id,
                                         versioning_configuration={"status": "Enabled"}, opts=opts)
    aws.s3.BucketPolicy(f"{name}-bundles", bucket=bucket.id, policy=bucket.arn.apply(lambda arn: json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                       "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}],
    })), opts=opts)

    version_label = pulumi.Output.all(release.version, release.sha256).apply(lambda v: label(v[0], v[1]))
    package = aws.s3.BucketObjectv2(
        f"{name}-package", bucket=bucket.id, key=version_label.apply(lambda v: f"releases/site-{v}.zip"),
        source=pulumi.Output.all(release.package, release.sha256).apply(
            lambda v: package_asset(project_dir, v[0], v[1])),
        content_type="application/zip",
        # S3 checks the upload against a SHA-256 it computes itself.
        checksum_algorithm="SHA256",
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[versioning])))
    version = aws.elasticbeanstalk.ApplicationVersion(
        f"{name}-version", name=version_label, application=application.name, bucket=bucket.id, key=package.key,
        description=pulumi.Output.concat("Siteline release ", release.version, " sha256 ", release.sha256), opts=opts)
    return Bundle(bucket=bucket, version=version)
