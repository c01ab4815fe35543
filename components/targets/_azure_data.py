"""Azure data tier: a private network and the PostgreSQL Flexible Server the site's DATABASE_URL points at."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_random as random
from pulumi_azure_native import dbforpostgresql, network, privatedns

from components.targets import _azure_rules as rules


@dataclass(frozen=True)
class Place:
    """Where a resource goes: its parent component, name prefix and resource group."""

    parent: pulumi.Resource
    name: str
    base: str
    group: pulumi.Output[str]
    location: str
    suffix: pulumi.Output[str]

    def opts(self, **extra: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, **extra)


@dataclass(frozen=True)
class Network:
    app_subnet: pulumi.Output[str]
    database_subnet: pulumi.Output[str]
    zone: privatedns.PrivateZone
    zone_link: privatedns.VirtualNetworkLink
    jobs_subnet: Optional[pulumi.Output[str]]  # one-shot containers (masking a refreshed copy); None where unused


@dataclass(frozen=True)
class Postgres:
    server: dbforpostgresql.Server
    database: dbforpostgresql.Database
    url: pulumi.Output[str]  # secret


def jobs_range(address_space: str) -> str:
    """The /27 right after the address space: the app and database halves fill the space itself."""
    space = ipaddress.ip_network(address_space)
    return str(ipaddress.ip_network((space.broadcast_address + 1, 27)))


def private_network(place: Place, address_space: str, retain: bool, jobs: Optional[str] = None) -> Network:
    """Private access: the database has no public endpoint; the app reaches it through VNet integration.
    `jobs`: an extra range for a subnet that Container Instances run in, inside the network (masking a copy)."""
    space = ipaddress.ip_network(address_space)
    app_range, database_range = (str(s) for s in list(space.subnets(prefixlen_diff=1))[:2])
    # The jobs subnet is declared for every role that can take a copy, refreshing or not: removing it together with
    # the last container group would fail (the network update runs before Pulumi deletes the group holding it).
    jobs_subnets = [network.SubnetArgs(name="jobs", address_prefix=jobs, delegations=[network.DelegationArgs(
        name="containers", service_name="Microsoft.ContainerInstance/containerGroups")])] if jobs else []
    vnet = network.VirtualNetwork(
        f"{place.name}-vnet", virtual_network_name=f"{place.base}-vnet", resource_group_name=place.group,
        location=place.location,
        address_space=network.AddressSpaceArgs(address_prefixes=[str(space), *([jobs] if jobs else [])]),
        subnets=[
            network.SubnetArgs(name="app", address_prefix=app_range, delegations=[network.DelegationArgs(
                name="web", service_name="Microsoft.Web/serverFarms")]),
            network.SubnetArgs(name="database", address_prefix=database_range, delegations=[network.DelegationArgs(
                name="postgres", service_name="Microsoft.DBforPostgreSQL/flexibleServers")]),
            *jobs_subnets,
        ],
        opts=place.opts(retain_on_delete=retain))
    zone = privatedns.PrivateZone(
        f"{place.name}-db-zone", private_zone_name=f"{place.base}.private.postgres.database.azure.com",
        resource_group_name=place.group, location="global", opts=place.opts(retain_on_delete=retain))
    link = privatedns.VirtualNetworkLink(
        f"{place.name}-db-zone-link", private_zone_name=zone.name, resource_group_name=place.group,
        location="global", registration_enabled=False, virtual_network=privatedns.SubResourceArgs(id=vnet.id),
        opts=place.opts(retain_on_delete=retain))
    return Network(pulumi.Output.concat(vnet.id, "/subnets/app"), pulumi.Output.concat(vnet.id, "/subnets/database"),
                   zone, link, pulumi.Output.concat(vnet.id, "/subnets/jobs") if jobs else None)


def postgres(place: Place, config: Any, net: Network, live: bool) -> Postgres:
    db = config.database
    sku = rules.database_sku(config)
    retain = db.retain_on_destroy
    # RandomPassword marks `result` secret itself; wrapping again keeps it secret wherever that marking is lost.
    password = pulumi.Output.secret(random.RandomPassword(
        f"{place.name}-db-password", length=32, special=False, opts=place.opts()).result)
    server = dbforpostgresql.Server(
        f"{place.name}-postgres", server_name=pulumi.Output.concat(place.base, "-db-", place.suffix),
        resource_group_name=place.group, location=place.location, version=db.version,
        administrator_login="siteline", administrator_login_password=password, create_mode="Default",
        sku=dbforpostgresql.SkuArgs(name=sku, tier=rules.database_tier(sku)),
        storage=dbforpostgresql.StorageArgs(storage_size_gb=db.storage_gb, auto_grow="Enabled"),
        backup=dbforpostgresql.BackupArgs(backup_retention_days=db.backup_retention_days,
                                          geo_redundant_backup="Disabled"),
        high_availability=dbforpostgresql.HighAvailabilityArgs(
            mode="ZoneRedundant" if db.high_availability else "Disabled"),
        network=dbforpostgresql.NetworkArgs(delegated_subnet_resource_id=net.database_subnet,
                                            private_dns_zone_arm_resource_id=net.zone.id,
                                            public_network_access="Disabled"),
        opts=place.opts(protect=live, retain_on_delete=retain, depends_on=[net.zone_link],
                        additional_secret_outputs=["administratorLoginPassword"]))
    database = dbforpostgresql.Database(
        f"{place.name}-database", database_name=db.name, server_name=server.name, resource_group_name=place.group,
        charset="UTF8", collation="en_US.utf8", opts=place.opts(protect=live, retain_on_delete=retain))
    url = pulumi.Output.secret(pulumi.Output.concat(
        "postgresql://siteline:", password, "@", server.fully_qualified_domain_name, f":5432/{db.name}",
        "?sslmode=require"))
    return Postgres(server, database, url)
