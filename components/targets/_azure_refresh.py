"""Azure database refresh: a point-in-time restore of the source server into a new server, masked before use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Optional

import pulumi
import pulumi_random as random
from pulumi_azure_native import containerinstance, dbforpostgresql
from pulumi_command import local as command

from components import mask
from components.refresh import Refresh
from components.targets import Problem
from components.targets._azure_data import Network, Place

# refreshId names the moment restored, in UTC. Config values allow no colons, so the time is written without them:
# 2026-11-26 (midnight UTC), 2026-11-26T1000Z or 2026-11-26T100000Z, each optionally followed by .<n> to take the
# same moment again after a failed attempt.
POINT_IN_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:T(\d{2})(\d{2})(\d{2})?Z)?(?:\.\d{1,3})?$")
TIME_FORMAT = "2026-11-26T1000Z (UTC; 2026-11-26 alone means 00:00 UTC; add .2 to retry the same moment)"
# The masking container: a plain postgres image runs the script against the copy, from inside this stack's network.
# The salt goes in on stdin (printf is a shell builtin: no command line shows it), the script follows on the same
# session, all in one transaction; a failing statement rolls everything back and exits non-zero. Query results go to
# /dev/null: `SELECT set_config(...)` would print the salt into the container's logs.
MASK_COMMAND = (
    "set -eu; n=0; until pg_isready -q -t 5; do n=$((n+1)); "
    "if [ \"$n\" -ge 60 ]; then echo 'siteline-mask: the copy does not answer'; exit 3; fi; sleep 5; done; "
    "{ printf \"SELECT set_config('siteline.mask_salt', '%s', false);\\n\" \"$MASK_SALT\"; "
    "printf '%s' \"$MASK_SQL\"; } | psql -q --no-psqlrc -o /dev/null --single-transaction -v ON_ERROR_STOP=1 -f -; "
    "echo 'siteline-mask: masked'")


@dataclass(frozen=True)
class Copy:
    server: dbforpostgresql.Server
    name: str  # the database on the copy: the source's own name (a restore copies the whole server)
    url: pulumi.Output[str]  # secret
    masked: command.Command  # done only when masking exited 0: everything that lets the site read the copy waits


def point_in_time(refresh_id: str) -> Optional[datetime]:
    """The UTC moment a refresh id names, or None when it names none."""
    found = POINT_IN_TIME.match(refresh_id)
    if not found:
        return None
    day, hour, minute, second = found.groups()
    try:
        return datetime.strptime(f"{day} {hour or '00'}:{minute or '00'}:{second or '00'}",
                                 "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def slug(refresh_id: str) -> str:
    return re.sub(r"[^a-z0-9]", "", refresh_id.lower())


def restore(place: Place, refresh: Refresh, net: Network, subscription: pulumi.Output[str], script: str,
            image: str, timeout: int) -> Copy:
    """Restore, reset the copy's login, mask; every resource is named by the refresh id, so a new id declares a new
    copy beside the previous one, and the previous one (no longer declared) is deleted only at the end of an update
    that switched the site away from it. A failed update deletes nothing: the site keeps reading its previous copy."""
    moment = point_in_time(refresh.refresh_id)
    if moment is None or net.jobs_subnet is None:
        raise ValueError(f"refresh {refresh.refresh_id} cannot be restored here; check() refuses this configuration")
    rid, key = refresh.refresh_id, slug(refresh.refresh_id)
    server_name = pulumi.Output.concat(place.base[:24], "-db-", place.suffix, "-r", key[:24])
    # The copy comes from the source's backups: same region (and subscription), network and DNS zone of this stack.
    # Never protected, whatever the source is: the previous copy must go once the site moved to the next one.
    server = dbforpostgresql.Server(
        f"{place.name}-copy-{key}", server_name=server_name, resource_group_name=place.group,
        location=place.location, create_mode="PointInTimeRestore",
        source_server_resource_id=str(refresh.source["id"]),
        point_in_time_utc=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        network=dbforpostgresql.NetworkArgs(delegated_subnet_resource_id=net.database_subnet,
                                            private_dns_zone_arm_resource_id=net.zone.id,
                                            public_network_access="Disabled"),
        opts=place.opts(protect=False, retain_on_delete=False, depends_on=[net.zone_link]))
    # A restored server keeps the source's administrator password, which this stack never knows: the copy gets its
    # own, set through the management API before anything connects.
    password = pulumi.Output.secret(random.RandomPassword(
        f"{place.name}-copy-password-{key}", length=32, special=False, keepers={"refreshId": rid},
        opts=place.opts()).result)
    login = command.Command(
        f"{place.name}-copy-login-{key}", create=f"bash {script} set-password",
        environment={"SUBSCRIPTION": subscription, "SERVER_ID": server.id, "ADMIN_PASSWORD": password},
        triggers=[rid, server.id],
        opts=place.opts(depends_on=[server], additional_secret_outputs=["environment"]))
    salt = pulumi.Output.secret(random.RandomPassword(
        f"{place.name}-mask-salt-{key}", length=32, special=False, keepers={"refreshId": rid},
        opts=place.opts()).result)
    database = str(refresh.source.get("name") or "site")
    host = server.fully_qualified_domain_name
    job = containerinstance.ContainerGroup(
        f"{place.name}-mask-{key}", container_group_name=pulumi.Output.concat(place.base[:36], "-mask-r", key[:20]),
        resource_group_name=place.group, location=place.location, os_type="Linux", sku="Standard",
        # Runs once: a container that exits is never restarted, so its exit code is the masking's verdict.
        restart_policy="Never",
        subnet_ids=[containerinstance.ContainerGroupSubnetIdArgs(id=net.jobs_subnet, name="jobs")],
        containers=[containerinstance.ContainerArgs(
            name="mask", image=image, command=["/bin/sh", "-c", MASK_COMMAND],
            resources=containerinstance.ResourceRequirementsArgs(
                requests=containerinstance.ResourceRequestsArgs(cpu=1, memory_in_gb=1.5)),
            environment_variables=[
                containerinstance.EnvironmentVariableArgs(name="PGHOST", value=host),
                containerinstance.EnvironmentVariableArgs(name="PGPORT", value="5432"),
                containerinstance.EnvironmentVariableArgs(name="PGUSER", value="siteline"),
                containerinstance.EnvironmentVariableArgs(name="PGDATABASE", value=database),
                containerinstance.EnvironmentVariableArgs(name="PGSSLMODE", value="require"),
                containerinstance.EnvironmentVariableArgs(name="MASK_SQL", value=mask.script(refresh.mask)),
                # Secure values: Azure never returns them, and they are secret in Pulumi's state.
                containerinstance.EnvironmentVariableArgs(name="PGPASSWORD", secure_value=password),
                containerinstance.EnvironmentVariableArgs(name="MASK_SALT", secure_value=salt)])],
        opts=place.opts(depends_on=[login], additional_secret_outputs=["containers"]))
    masked = command.Command(
        f"{place.name}-mask-wait-{key}", create=f"bash {script} wait-mask",
        environment={"SUBSCRIPTION": subscription, "RESOURCE_GROUP": place.group,
                     "CONTAINER_GROUP": job.name, "MASK_TIMEOUT": str(timeout)},
        triggers=[rid, job.id], opts=place.opts(depends_on=[job]))
    url = pulumi.Output.secret(pulumi.Output.concat(
        "postgresql://siteline:", password, "@", host, f":5432/{database}?sslmode=require"))
    return Copy(server, database, url, masked)


def problems(config: Any) -> list[Problem]:
    """The refresh's config rules: a refresh id naming a past moment in UTC."""
    db = config.database
    if not (db.refresh_from and db.refresh_id):
        return []
    moment = point_in_time(db.refresh_id)
    fix = "pulumi config set --path siteline:database.refreshId 2026-11-26T1000Z"
    if moment is None:
        return [("database.refreshId", f"is {db.refresh_id}; on azure it names the moment to restore the source "
                 f"from, as {TIME_FORMAT}", fix)]
    if moment > datetime.now(UTC):
        return [("database.refreshId", f"names {moment:%Y-%m-%dT%H:%M:%SZ}, in the future; a point-in-time restore "
                 "needs a moment the source's backups already cover", fix)]
    return []
