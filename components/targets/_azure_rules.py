"""Azure sizing and naming rules: which SKUs a role gets, what they can do, and the checks that follow."""

from __future__ import annotations

import re
from typing import Any

from components.targets import Problem

# Deployment slots exist from Standard up; the value is the most instances the tier scales to.
PLAN_TIERS = {"S": 10, "P": 30, "I": 100}
PLAN_PATTERN = re.compile(r"^(S[1-3]|P[0-5]v[23]|P[1-5]mv3|I[1-6]v2)$")
DEFAULT_PLAN = {"live": "P1v3"}
DEFAULT_PLAN_OTHER = "S1"
DEFAULT_DATABASE = {"live": "Standard_D2ds_v5"}
DEFAULT_DATABASE_OTHER = "Standard_B1ms"
# PostgreSQL Flexible Server offers these disk sizes only (GiB).
STORAGE_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
DEFAULT_START = ("gunicorn --bind 127.0.0.1:", "python3 -m gunicorn --bind 0.0.0.0:")


def plan_sku(config: Any) -> str:
    return config.hosting.size or DEFAULT_PLAN.get(config.role, DEFAULT_PLAN_OTHER)


def database_sku(config: Any) -> str:
    return config.database.size or DEFAULT_DATABASE.get(config.role, DEFAULT_DATABASE_OTHER)


def database_tier(sku: str) -> str:
    """Flexible Server names its tier apart from the SKU; the SKU's family letter decides it."""
    family = sku.removeprefix("Standard_")[:1]
    return {"B": "Burstable", "E": "MemoryOptimized"}.get(family, "GeneralPurpose")


def linux_fx_version(runtime: str) -> str:
    return "PYTHON|" + runtime.split(":", 1)[1]


def start_command(start: str, default_start: str) -> str:
    """App Service forwards to the container's port, so the default loopback bind must listen on all interfaces.
    `python3 -m` runs the gunicorn the package carries (its directory comes first on sys.path), not the image's."""
    return start.replace(*DEFAULT_START, 1) if start == default_start else start


def slug(text: str, length: int) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())[:length]


def check(config: Any, hosting: Any) -> list[Problem]:
    found: list[Problem] = []
    sku = plan_sku(config)
    if not PLAN_PATTERN.match(sku):
        found.append(("hosting.size", f"is {sku}, an App Service plan without deployment slots (the release swaps a "
                      "staging slot)", "pulumi config set --path siteline:hosting.size S1 (or P1v3)"))
    elif config.hosting.instances > PLAN_TIERS[sku[0]]:
        most = PLAN_TIERS[sku[0]]
        found.append(("hosting.instances", f"is {config.hosting.instances}; an App Service plan of size {sku} scales "
                      f"to {most}", f"pulumi config set --path siteline:hosting.instances {most}"))
    db_sku = database_sku(config)
    if not re.fullmatch(r"Standard_[A-Z][0-9A-Za-z_]+", db_sku):
        found.append(("database.size", f"is {db_sku}, not a PostgreSQL Flexible Server SKU",
                      "pulumi config set --path siteline:database.size Standard_B1ms"))
    elif config.database.high_availability and database_tier(db_sku) == "Burstable":
        found.append(("database.highAvailability", f"needs a General Purpose or Memory Optimized SKU ({db_sku} is "
                      "Burstable)", "pulumi config set --path siteline:database.size Standard_D2ds_v5"))
    if config.database.storage_gb not in STORAGE_SIZES:
        sizes = ", ".join(map(str, STORAGE_SIZES))
        found.append(("database.storageGb", f"is {config.database.storage_gb}; Flexible Server offers {sizes} GiB",
                      "pulumi config set --path siteline:database.storageGb 32"))
    if config.database.backup_retention_days < 7:
        found.append(("database.backupRetentionDays", f"is {config.database.backup_retention_days}; Flexible Server "
                      "keeps backups 7 to 35 days", "pulumi config set --path siteline:database.backupRetentionDays 7"))
    if hosting.install_requirements and config.role in ("test", "live"):
        found.append(("hosting.azure.installRequirements", f"is true on {config.role}, which would install packages "
                      "from PyPI at every start: test and live run the promoted package as built, never a build",
                      "pulumi config set --path siteline:hosting.azure.installRequirements false, and build the "
                      "package with its dependencies: python examples/site/package.py --with-deps --version X"))
    start = config.site.start
    default_start = type(config.site).model_fields["start"].default
    if start != default_start and re.search(r"(127\.0\.0\.1|localhost):", start):
        found.append(("site.start", "binds to the loopback address, which App Service cannot reach",
                      "pulumi config set --path siteline:site.start 'gunicorn --bind 0.0.0.0:${PORT} app:application'"))
    return found
