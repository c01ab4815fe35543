"""Target `azure`: App Service (Linux) whose staging slot is swapped in per release; Key Vault; PostgreSQL."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, managedidentity, resources, web
from pulumi_command import local as command
from pydantic import BaseModel, ConfigDict, Field, field_validator

from components import outputs
from components import refresh as refreshes
from components.targets import Problem, TargetArgs
from components.targets import _azure_data as data
from components.targets import _azure_refresh as copies
from components.targets import _azure_release as release_inputs
from components.targets import _azure_rules as rules

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "azure-release.sh"
REFRESH_SCRIPT = SCRIPT.with_name("azure-refresh.sh")
BUILTIN_MAIL_SINK = False
NEEDS_SSH_KEY = False
# A copy is a point-in-time restore of another Flexible Server: only an azure stack can be the source.
REFRESH_SOURCES = ("azure",)
# Built-in role definitions (the same GUIDs in every tenant).
BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# Settings that describe a slot, not the release: a swap leaves them where they are.
STICKY = ("SITELINE_SLOT", "WEBSITE_SWAP_WARMUP_PING_PATH", "WEBSITE_SWAP_WARMUP_PING_STATUSES")
# A swap carries these into production; Pulumi never writes them there (see the WebApp below).
SWAPPED = ["siteConfig.appSettings", "siteConfig.appCommandLine"]


class HOSTING(BaseModel):
    """`siteline:hosting.azure`: where the environment lives in the subscription."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    location: str = Field(pattern=r"^[a-z0-9]+$")
    resource_group: Optional[str] = Field(default=None, alias="resourceGroup", pattern=r"^[-\w.()]{0,89}[-\w()]$")
    address_space: str = Field(default="10.42.0.0/16", alias="addressSpace")
    warmup_timeout: int = Field(default=600, alias="warmupTimeout", ge=60, le=3600)
    # Off by default, and refused on test and live (see check()): those run the package as promoted, never a build.
    install_requirements: bool = Field(default=False, alias="installRequirements")
    # Database refresh (roles that take a copy): the masking container's image, how long masking may take, and the
    # range of the subnet it runs in (default: the /27 right after addressSpace).
    mask_image: Optional[str] = Field(default=None, alias="maskImage", pattern=r"^[\w.\-/:@]+$")
    mask_timeout: int = Field(default=3600, alias="maskTimeout", ge=300, le=21600)
    jobs_address_range: Optional[str] = Field(default=None, alias="jobsAddressRange")

    @field_validator("address_space")
    @classmethod
    def _private_range(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if not (net.version == 4 and net.is_private and net.prefixlen <= 27):
            raise ValueError("must be a private IPv4 range of /27 or larger, e.g. 10.42.0.0/16")
        return value

    @field_validator("jobs_address_range")
    @classmethod
    def _jobs_range(cls, value: Optional[str]) -> Optional[str]:
        net = ipaddress.ip_network(value, strict=True) if value else None
        if net and not (net.version == 4 and net.is_private and net.prefixlen <= 29):
            raise ValueError("must be a private IPv4 range of /29 or larger, e.g. 10.43.0.0/27")
        return value


def jobs_range(config: Any, hosting: HOSTING) -> Optional[str]:
    """The jobs subnet's range, on roles that can take a database copy; None elsewhere (live never takes one)."""
    if config.role not in refreshes.SOURCES:
        return None
    return hosting.jobs_address_range or data.jobs_range(hosting.address_space)


def check(config: Any, hosting: HOSTING) -> list[Problem]:
    found = rules.check(config, hosting) + copies.problems(config)
    if config.role in refreshes.SOURCES and not _jobs_range_fits(hosting):
        jobs = hosting.jobs_address_range or "the /27 after addressSpace"
        found.append(("hosting.azure.jobsAddressRange", f"is {jobs}: the subnet for one-shot containers (masking a "
                      f"database copy) needs a private range outside addressSpace {hosting.address_space}",
                      "pulumi config set --path siteline:hosting.azure.jobsAddressRange 10.43.0.0/27"))
    return found


def _jobs_range_fits(hosting: HOSTING) -> bool:
    try:
        jobs = ipaddress.ip_network(hosting.jobs_address_range or data.jobs_range(hosting.address_space))
    except ValueError:  # the /27 after addressSpace would fall off the end of the IPv4 space
        return False
    return jobs.is_private and not jobs.overlaps(ipaddress.ip_network(hosting.address_space))


def same_region(refresh: Optional[refreshes.Refresh], hosting: HOSTING) -> None:
    """A point-in-time restore stays in the source's region; the source exports its location (older ones did not:
    Azure then refuses a cross-region restore itself)."""
    source_location = refresh.source.get("location") if refresh else None
    if refresh and source_location and source_location != hosting.location:
        raise refreshes.RefreshError(
            f"siteline:database.refreshFrom: {refresh.source_stack} is in {source_location} and this stack in "
            f"{hosting.location}; a point-in-time restore stays in the source's region. Fix: pulumi config set --path "
            f"siteline:hosting.azure.location {source_location}, or refresh from a stack in {hosting.location}.")


def script_path(project_dir: Path, script: Path = SCRIPT) -> str:
    """The release script as the commands name it: relative to the project directory, the commands' working
    directory, so the same program checked out elsewhere declares the same command (an absolute path would differ,
    and a changed command runs again: a second swap)."""
    try:
        return script.relative_to(Path(project_dir).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{script} is outside the project directory {project_dir}: run pulumi from the project "
                         "that contains components/") from None


class Target(pulumi.ComponentResource):
    url: pulumi.Output[str]
    database: pulumi.Output[dict[str, Any]]
    smtp: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: TargetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        settings, cfg, release = args.settings, args.settings.config, args.release
        hosting: HOSTING = settings.target_hosting
        same_region(args.refresh, hosting)  # before anything is declared
        super().__init__("siteline:targets:Azure", name, None, opts)
        self._cfg, self._hosting, live = cfg, hosting, cfg.role == "live"
        retain = cfg.database.retain_on_destroy
        child = pulumi.ResourceOptions(parent=self)
        base = f"{settings.project}-{settings.stack}"
        # Names are built from Outputs and strings only: resources are never declared inside apply(),
        # or preview would no longer show what the update does.
        suffix = random.RandomString(f"{name}-suffix", length=6, special=False, upper=False, opts=child).result
        group = resources.ResourceGroup(f"{name}-rg", resource_group_name=hosting.resource_group or base,
                                        location=hosting.location,
                                        opts=pulumi.ResourceOptions(parent=self, retain_on_delete=retain))
        place = data.Place(self, name, base, group.name, hosting.location, suffix)

        net = data.private_network(place, hosting.address_space, retain, jobs_range(cfg, hosting))
        db = data.postgres(place, cfg, net, live)
        package = release_inputs.package(place, release, settings.project_dir, live)
        # One user-assigned identity for both slots, granted before either exists: a slot's first start then
        # resolves its Key Vault references and fetches its package (a system-assigned identity could only be
        # granted after its slot exists, and App Service caches a failed reference). A swap moves no identity,
        # and none needs to move: both slots are the same principal.
        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_name_=f"{base}-site", resource_group_name=place.group,
            location=hosting.location, opts=child)
        # `/subscriptions/<id>` from the group id: the subscription Pulumi deploys to, which the az commands name too.
        subscription = group.id.apply(lambda i: i.split("/resourceGroups/")[0])
        subscription_id = subscription.apply(lambda s: s.rsplit("/", 1)[-1])
        self._script = script_path(settings.project_dir)
        # With a refresh, the site reads the masked copy; this role's own server stays, unused until refreshes stop.
        copy = self._copy(place, args, net, subscription_id) if args.refresh else None
        database_url, ready = (copy.url, [copy.masked]) if copy else (db.url, [])
        # The vault trusts the tenant the identity lives in: the deploying subscription's tenant. DATABASE_URL names
        # the copy only once masking succeeded: the new secret version (a new reference, so a new deployment digest)
        # is what moves the site, through the same staging slot and swap as a release.
        vault = release_inputs.vault(place, identity.tenant_id,
                                     {**args.app_config.secret, "DATABASE_URL": database_url}, live,
                                     after=[db.database, *ready])
        grants = self._grants(place, subscription, identity,
                              {"package-reader": (package.container.id, BLOB_DATA_READER),
                               "secrets-user": (vault.vault.id, KEY_VAULT_SECRETS_USER)})
        plan = web.AppServicePlan(
            f"{name}-plan", name=f"{base}-plan", resource_group_name=place.group, location=hosting.location,
            kind="linux", reserved=True,
            sku=web.SkuDescriptionArgs(name=rules.plan_sku(cfg), capacity=cfg.hosting.instances),
            opts=pulumi.ResourceOptions(parent=self, protect=live))
        site = {"resource_group_name": place.group, "location": hosting.location, "kind": "app,linux",
                "reserved": True, "server_farm_id": plan.id, "https_only": True, "client_affinity_enabled": False,
                "identity": web.ManagedServiceIdentityArgs(type=web.ManagedServiceIdentityType.USER_ASSIGNED,
                                                           user_assigned_identities=[identity.id]),
                "key_vault_reference_identity": identity.id, "virtual_network_subnet_id": net.app_subnet}
        site_config = {"linux_fx_version": rules.linux_fx_version(cfg.site.runtime), "always_on": True,
                       "ftps_state": "Disabled", "min_tls_version": "1.2", "scm_min_tls_version": "1.2",
                       "http20_enabled": True, "health_check_path": cfg.site.health_path,
                       "vnet_route_all_enabled": True}
        # Production gets its settings and start command only from swaps. It declares none, and ignores them,
        # so the next `pulumi up` neither undoes a swap nor restarts the site.
        app = web.WebApp(f"{name}-app", name=pulumi.Output.concat(base, "-", suffix), **site,
                         site_config=web.SiteConfigArgs(**site_config),
                         opts=pulumi.ResourceOptions(parent=self, ignore_changes=SWAPPED, depends_on=grants))
        settings_list, deployment = self._staging_settings(args.app_config.plain, vault.references, package.url,
                                                           identity.id)
        staging = web.WebAppSlot(f"{name}-staging", name=app.name, slot="staging", **site,
                                 site_config=web.SiteConfigArgs(**site_config, app_command_line=self._app_command(),
                                                                app_settings=settings_list),
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
        sticky = web.WebAppSlotConfigurationNames(f"{name}-sticky", name=app.name, resource_group_name=place.group,
                                                  app_setting_names=list(STICKY), opts=child)
        swap = command.Command(
            f"{name}-swap",
            # Triggers replace: each new release or configuration is one new swap. There is no delete: the
            # previous release stays in the staging slot, ready to swap back.
            create=f"bash {self._script} swap",
            environment={"SUBSCRIPTION": subscription_id,
                         "RESOURCE_GROUP": place.group, "APP_NAME": app.name, "SLOT": "staging",
                         "STAGING_HOST": staging.default_host_name, "PRODUCTION_HOST": app.default_host_name,
                         "HEALTH_PATH": cfg.site.health_path, "RELEASE_VERSION": release.version,
                         "DEPLOYMENT": deployment, "WARMUP_TIMEOUT": str(hosting.warmup_timeout)},
            triggers=[release.sha256, deployment],
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[staging, sticky, db.database, *ready, *vault.secrets, *grants]))
        serving: list[pulumi.CustomResource] = [swap]
        if cfg.hosting.domain:
            serving.append(self._custom_domain(place, plan, app, subscription_id))
        if live:
            # CanNotDelete, not ReadOnly: ReadOnly would block slot swaps and Pulumi's own updates.
            authorization.ManagementLockAtResourceGroupLevel(
                f"{name}-lock", lock_name="siteline-live", level="CanNotDelete", resource_group_name=place.group,
                notes="Live changes only through the Siteline program. Deleting anything here needs this lock removed.",
                opts=pulumi.ResourceOptions(parent=self, depends_on=serving))

        domain = cfg.hosting.domain
        # The URL waits for the swap, so consumers only see it once the release serves.
        self.url = pulumi.Output.all(app.default_host_name, *[r.id for r in serving]).apply(
            lambda v: f"https://{domain or v[0]}")
        # The database the site reads (the copy, when refreshing): a stack downstream restores from this one.
        serving_db = (copy.server, pulumi.Output.from_input(copy.name)) if copy else (db.server, db.database.name)
        location = hosting.location
        self.database = pulumi.Output.all(serving_db[0].fully_qualified_domain_name, serving_db[0].id,
                                          serving_db[1]).apply(
            lambda v: {"engine": "postgres", "host": v[0], "port": 5432, "name": v[2], "id": v[1],
                       "location": location})
        smtp = cfg.smtp
        self.smtp = pulumi.Output.from_input(outputs.smtp(str(smtp.host), smtp.port, smtp.mode))
        self.register_outputs({"url": self.url, "database": self.database, "smtp": self.smtp})

    def _copy(self, place: data.Place, args: TargetArgs, net: data.Network,
              subscription_id: pulumi.Output[str]) -> copies.Copy:
        refresh, hosting = args.refresh, self._hosting
        assert refresh is not None
        image = hosting.mask_image or f"postgres:{self._cfg.database.version}"
        return copies.restore(place, refresh, net, subscription_id,
                              script_path(args.settings.project_dir, REFRESH_SCRIPT), image, hosting.mask_timeout)

    def _app_command(self) -> str:
        site = self._cfg.site
        start = rules.start_command(site.start, type(site).model_fields["start"].default)
        # No build runs on a mounted package: it carries its dependencies (package.py --with-deps). Only dev may
        # opt in to installing them at start (check() refuses it elsewhere). Migrations (expand-only, under an
        # advisory lock) run before the slot takes traffic.
        install = ("if [ -f requirements.txt ]; then python3 -m pip install --no-cache-dir --quiet "
                   "-r requirements.txt; fi && ") if self._hosting.install_requirements else ""
        return f"{install}{site.migrate} && {start}"

    def _staging_settings(self, app_plain: Any, references: dict[str, pulumi.Output[str]],
                          package_url: pulumi.Output[str], identity_id: pulumi.Output[str],
                          ) -> tuple[list[web.NameValuePairArgs], pulumi.Output[str]]:
        """The staging slot's settings, and the digest of what production will run once they are swapped in."""
        site = self._cfg.site
        plain: dict[str, pulumi.Input[str]] = {
            **app_plain, **references, "PORT": str(site.port), "WEBSITES_PORT": str(site.port),
            "SCM_DO_BUILD_DURING_DEPLOYMENT": "false", "WEBSITE_RUN_FROM_PACKAGE": package_url,
            # The slot fetches the private blob with the user-assigned identity: no key or SAS in the setting.
            "WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID": identity_id,
            "WEBSITE_SWAP_WARMUP_PING_PATH": site.health_path, "WEBSITE_SWAP_WARMUP_PING_STATUSES": "200",
            "SITELINE_SLOT": "staging"}
        names = sorted(plain)
        command_line = self._app_command()
        deployment = pulumi.Output.all(*[plain[n] for n in names]).apply(lambda values: hashlib.sha256(
            json.dumps([names, values, command_line, site.runtime]).encode()).hexdigest()[:16])
        pairs = [web.NameValuePairArgs(name=n, value=plain[n]) for n in names]
        return [*pairs, web.NameValuePairArgs(name="SITELINE_DEPLOYMENT", value=deployment)], deployment

    def _grants(self, place: data.Place, subscription: pulumi.Output[str],
                identity: managedidentity.UserAssignedIdentity,
                roles: dict[str, tuple[pulumi.Output[str], str]]) -> list[authorization.RoleAssignment]:
        """The sites' one identity reads the package and the secrets, and nothing else."""
        return [authorization.RoleAssignment(
            f"{place.name}-{role}", principal_id=identity.principal_id, principal_type="ServicePrincipal",
            scope=scope, role_definition_id=pulumi.Output.concat(
                subscription, "/providers/Microsoft.Authorization/roleDefinitions/", guid),
            opts=place.opts()) for role, (scope, guid) in roles.items()]

    def _custom_domain(self, place: data.Place, plan: web.AppServicePlan, app: web.WebApp,
                       subscription: pulumi.Output[str]) -> pulumi.CustomResource:
        domain = str(self._cfg.hosting.domain)
        binding = web.WebAppHostNameBinding(
            f"{place.name}-domain", name=app.name, resource_group_name=place.group, host_name=domain,
            host_name_type=web.HostNameType.VERIFIED,
            custom_host_name_dns_record_type=web.CustomHostNameDnsRecordType.C_NAME,
            # The TLS binding is set by the command below, once the managed certificate exists.
            opts=place.opts(ignore_changes=["sslState", "thumbprint"]))
        certificate = web.Certificate(
            f"{place.name}-certificate", name=f"{place.base}-{rules.slug(domain, 40)}", canonical_name=domain,
            server_farm_id=plan.id, resource_group_name=place.group, location=place.location,
            opts=place.opts(depends_on=[binding]))
        return command.Command(
            f"{place.name}-tls", create=f"bash {self._script} bind-tls",
            environment={"SUBSCRIPTION": subscription,
                         "RESOURCE_GROUP": place.group, "APP_NAME": app.name, "HOST_NAME": domain,
                         "THUMBPRINT": certificate.thumbprint},
            triggers=[certificate.thumbprint], opts=place.opts(depends_on=[binding]))
