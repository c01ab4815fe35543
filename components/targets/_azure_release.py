"""Azure release inputs: secrets in Key Vault (referenced, never copied) and the package as a private blob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_azure_native import keyvault, storage

from components.release import Release, package_asset
from components.targets import _azure_rules as rules
from components.targets._azure_data import Place


@dataclass(frozen=True)
class Vault:
    vault: keyvault.Vault
    secrets: list[keyvault.Secret]
    references: dict[str, pulumi.Output[str]]  # env name -> @Microsoft.KeyVault(...) reference


@dataclass(frozen=True)
class Package:
    container: storage.BlobContainer
    url: pulumi.Output[str]


def secret_name(env_name: str) -> str:
    """Key Vault names allow letters, digits and hyphens only."""
    return env_name.lower().replace("_", "-")


def vault(place: Place, tenant_id: pulumi.Output[str], secrets: Mapping[str, pulumi.Output[str]],
          live: bool, after: list[pulumi.Resource]) -> Vault:
    store = keyvault.Vault(
        f"{place.name}-vault", vault_name=pulumi.Output.concat("kv-", rules.slug(place.base, 14), "-", place.suffix),
        resource_group_name=place.group, location=place.location,
        properties=keyvault.VaultPropertiesArgs(
            tenant_id=tenant_id, sku=keyvault.SkuArgs(family="A", name=keyvault.SkuName.STANDARD),
            enable_rbac_authorization=True, enable_soft_delete=True,
            soft_delete_retention_in_days=90 if live else 7,
            # Purge protection cannot be switched off again once on, so only live turns it on.
            enable_purge_protection=True if live else None),
        opts=place.opts(protect=live))
    created: list[keyvault.Secret] = []
    references: dict[str, pulumi.Output[str]] = {}
    for env_name, value in sorted(secrets.items()):
        secret = keyvault.Secret(
            f"{place.name}-secret-{secret_name(env_name)}", secret_name=secret_name(env_name), vault_name=store.name,
            resource_group_name=place.group,
            properties=keyvault.SecretPropertiesArgs(value=pulumi.Output.secret(value), content_type="text/plain"),
            opts=place.opts(additional_secret_outputs=["properties"], depends_on=after))
        created.append(secret)
        # The versioned URI names a secret, it is not one; a new value gives a new URI, hence a new deployment.
        references[env_name] = pulumi.Output.unsecret(secret.properties.apply(
            lambda p: f"@Microsoft.KeyVault(SecretUri={p.secret_uri_with_version})"))
    return Vault(store, created, references)


def package(place: Place, release: Release, project_dir: Path, live: bool) -> Package:
    account = storage.StorageAccount(
        f"{place.name}-releases", account_name=pulumi.Output.concat("st", rules.slug(place.base, 14), place.suffix),
        resource_group_name=place.group, location=place.location, kind="StorageV2",
        sku=storage.SkuArgs(name="Standard_ZRS" if live else "Standard_LRS"),
        allow_blob_public_access=False, minimum_tls_version="TLS1_2", enable_https_traffic_only=True,
        # Shared keys stay enabled only because azure-native's Blob upload uses them
        # (pulumi/pulumi-azure-native#2015); the site reads with its identity, and no key or SAS is configured.
        allow_shared_key_access=True, default_to_o_auth_authentication=True, opts=place.opts())
    container = storage.BlobContainer(
        f"{place.name}-releases-container", container_name="releases", account_name=account.name,
        resource_group_name=place.group, public_access=storage.PublicAccess.NONE, opts=place.opts())
    blob = storage.Blob(
        f"{place.name}-package",
        blob_name=pulumi.Output.concat("site-", release.version, "-", release.sha256.apply(lambda s: s[:12]), ".zip"),
        account_name=account.name, container_name=container.name, resource_group_name=place.group,
        type=storage.BlobType.BLOCK, content_type="application/zip",
        source=pulumi.Output.all(release.package, release.sha256).apply(
            lambda v: package_asset(project_dir, v[0], v[1])),
        # Each release is its own blob, kept: the slot swapped out still runs the previous one.
        opts=place.opts(retain_on_delete=True))
    return Package(container, blob.url)
