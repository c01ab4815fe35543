"""AWS target, release half: a private bucket for source bundles, the package in it, one EB version per release."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.release import Release, package_asset

# A bundle the EB lifecycle deleted stays recoverable (as a noncurrent S3 version) this long.
DELETED_BUNDLE_DAYS = 30


@dataclass(frozen=True)
class Store:
    bucket: aws.s3.Bucket
    versioning: aws.s3.BucketVersioning


def label(version: str, sha256: str, deployment: str) -> str:
    """The EB version label: the release, a short sha, and a suffix new each time the release changes.

    Old versions are retained for rollback, so EB still holds the label of every recent release: going
    back to one through Pulumi must create a version under a new label, not collide with the kept one.
    """
    return f"{version}-{sha256[:12]}-{deployment}"


def store(name: str, live: bool, opts: pulumi.ResourceOptions) -> Store:
    """The bundle bucket: private, TLS only, encrypted, versioned; protected on live."""
    # Outside live the bucket may be emptied on destroy; live's history of bundles stays.
    bucket = aws.s3.Bucket(f"{name}-bundles", force_destroy=not live,
                           opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=live)))
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
    # EB's version lifecycle deletes old bundles; versioning turns that into a delete marker, so the bytes
    # go only after DELETED_BUNDLE_DAYS, and the markers left behind are cleaned up.
    aws.s3.BucketLifecycleConfiguration(f"{name}-bundles", bucket=bucket.id, rules=[{
        "id": "expire-deleted-bundles", "status": "Enabled", "filter": {"prefix": "releases/"},
        "noncurrent_version_expiration": {"noncurrent_days": DELETED_BUNDLE_DAYS},
        "expiration": {"expired_object_delete_marker": True},
        "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
    }], opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[versioning])))
    aws.s3.BucketPolicy(f"{name}-bundles", bucket=bucket.id, policy=bucket.arn.apply(lambda arn: json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                       "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}],
    })), opts=opts)
    return Store(bucket=bucket, versioning=versioning)


def bundle(name: str, release: Release, project_dir: Path, application: aws.elasticbeanstalk.Application,
           bundles: Store, opts: pulumi.ResourceOptions) -> aws.elasticbeanstalk.ApplicationVersion:
    """The release's package in the bucket and its EB application version."""
    # New whenever the release changes (including back to an earlier one), never on an unchanged release.
    deployment = random.RandomId(f"{name}-version-suffix", byte_length=4,
                                 keepers={"version": release.version, "sha256": release.sha256}, opts=opts)
    version_label = pulumi.Output.all(release.version, release.sha256, deployment.hex).apply(
        lambda v: label(v[0], v[1], v[2]))
    # A new release replaces both; the old ones are left in place (retain_on_delete), so EB keeps a rollback
    # target. EB's version lifecycle on the application removes them later (see docs/targets/aws.md).
    package = aws.s3.BucketObjectv2(
        f"{name}-package", bucket=bundles.bucket.id, key=version_label.apply(lambda v: f"releases/site-{v}.zip"),
        source=pulumi.Output.all(release.package, release.sha256).apply(
            lambda v: package_asset(project_dir, v[0], v[1])),
        content_type="application/zip",
        # S3 checks the upload against a SHA-256 it computes itself.
        checksum_algorithm="SHA256",
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            retain_on_delete=True, depends_on=[bundles.versioning])))
    return aws.elasticbeanstalk.ApplicationVersion(
        f"{name}-version", name=version_label, application=application.name, bucket=bundles.bucket.id,
        key=package.key, description=pulumi.Output.concat("Siteline release ", release.version, " sha256 ",
                                                          release.sha256),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True)))
