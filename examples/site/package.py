"""Build the site's release package: a reproducible zip, its version and its sha256.

With --with-deps the package also carries the site's dependencies (requirements.txt), installed
as wheels for the platform that runs it (App Service: manylinux x86_64, CPython 3.11), so the
hosts that run it (test, live) never install or build anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION_PATTERN = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$")
# Fixed metadata: the same sources and version always give the same bytes, hence the same sha256.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
EXCLUDED_DIRS = {
    "__pycache__",
    "tests",
    "dist",
    "venv",
    ".venv",
    ".git",
    ".pytest_cache",
    ".ruff_cache",
}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
# VERSION is written from --version; a stale one in the source tree must not win.
EXCLUDED_ROOT_FILES = {"package.py", "VERSION"}
REQUIRED_FILES = ("app.py", "migrate.py")
DEFAULT_PLATFORM = "manylinux2014_x86_64"
DEFAULT_PYTHON_VERSION = "3.11"
# Console scripts carry the build machine's interpreter path in their first line: useless on the host.
EXCLUDED_VENDOR_DIRS = {"bin", "__pycache__"}


class PackageError(Exception):
    """The package cannot be built; the message says why."""


def package_files(source: Path, out_dir: Path) -> list[tuple[str, Path]]:
    """(archive name, path) for every file that belongs in the package, sorted by name."""
    entries: list[tuple[str, Path]] = []
    for directory, dirnames, filenames in os.walk(source):
        here = Path(directory)
        dirnames[:] = [
            name
            for name in dirnames
            if name not in EXCLUDED_DIRS
            and not name.startswith(".")
            and (here / name).resolve() != out_dir
        ]
        for filename in filenames:
            path = here / filename
            relative = path.relative_to(source).as_posix()
            if relative in EXCLUDED_ROOT_FILES or filename.endswith(EXCLUDED_SUFFIXES):
                continue
            if filename.startswith(".") or not path.is_file():
                continue
            entries.append((relative, path))
    return sorted(entries)


def vendored(source: Path, platform: str, python_version: str) -> list[tuple[str, bytes]]:
    """(archive name, bytes) of every file of the site's dependencies, installed for `platform`.

    Wheels only (--only-binary): nothing is compiled, and a wheel installs the same files
    wherever it is installed. Pinned requirements (==) give the same package on every build.
    pip's own settings apply (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, ...).
    """
    requirements = source / "requirements.txt"
    if not requirements.is_file():
        raise PackageError(f"--with-deps needs {requirements}")
    with tempfile.TemporaryDirectory(prefix="site-deps.") as target:
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--no-warn-script-location", "--target", target,
            "--only-binary=:all:", "--platform", platform, "--python-version", python_version,
            "--implementation", "cp", "--requirement", str(requirements),
        ]  # fmt: skip
        installed = subprocess.run(command, capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            raise PackageError(
                f"installing {requirements} for {platform} / Python {python_version} "
                f"failed:\n{installed.stderr.strip()}"
            )
        root = Path(target)
        members = []
        for directory, dirnames, filenames in os.walk(root):
            here = Path(directory)
            dirnames[:] = [
                name
                for name in dirnames
                if name != "__pycache__"
                and not (here == root and name in EXCLUDED_VENDOR_DIRS)
            ]
            for filename in filenames:
                path = here / filename
                if filename.endswith(EXCLUDED_SUFFIXES) or not path.is_file():
                    continue
                members.append((path.relative_to(root).as_posix(), path.read_bytes()))
    return members


def build(
    version: str,
    source: Path,
    out_dir: Path,
    deps: tuple[str, str] | None = None,
) -> tuple[Path, str]:
    """Write `<out_dir>/site-<version>.zip` and return its path and sha256.

    `deps` is (platform, python version) to vendor the site's dependencies, None not to.
    """
    if not VERSION_PATTERN.match(version):
        raise PackageError(
            f"--version {version!r} is not a release version like 1.2.0 or 1.2.0-rc.1"
        )
    source = source.resolve()
    out_dir = out_dir.resolve()
    missing = [name for name in REQUIRED_FILES if not (source / name).is_file()]
    if missing:
        raise PackageError(
            f"--source {source} is not the site: missing {', '.join(missing)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"site-{version}.zip"

    members = [("VERSION", f"{version}\n".encode())]
    members += [
        (name, path.read_bytes()) for name, path in package_files(source, out_dir)
    ]
    if deps is not None:
        # Dependencies sit at the package root: the directory the site starts in comes first
        # on sys.path (python3 migrate.py, python3 -m gunicorn), before anything installed.
        ours = {name for name, _ in members}
        theirs = vendored(source, *deps)
        clash = sorted(ours & {name for name, _ in theirs})
        if clash:
            raise PackageError(
                f"a dependency installs files the site has: {', '.join(clash[:5])}"
            )
        members += theirs
    members.sort()

    fd, temporary = tempfile.mkstemp(
        prefix=f".site-{version}.", suffix=".zip", dir=out_dir
    )
    try:
        with os.fdopen(fd, "wb") as stream, zipfile.ZipFile(stream, "w") as archive:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = FILE_MODE << 16
                archive.writestr(info, data, compresslevel=9)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return target, digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", required=True, help="release version, e.g. 1.2.0")
    parser.add_argument(
        "--source",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="the site's source directory (default: the directory of this script)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("dist"),
        help="output directory (default: dist)",
    )
    parser.add_argument(
        "--with-deps",
        action="store_true",
        help="include the dependencies of requirements.txt, installed as wheels for "
        "--platform and --python-version (what App Service needs: it installs nothing)",
    )
    parser.add_argument(
        "--platform",
        default=DEFAULT_PLATFORM,
        help=f"wheel platform for --with-deps (default: {DEFAULT_PLATFORM})",
    )
    parser.add_argument(
        "--python-version",
        default=DEFAULT_PYTHON_VERSION,
        help="Python version for --with-deps, as in site.runtime "
        f"(default: {DEFAULT_PYTHON_VERSION})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print {version, package, sha256}, the shape of the siteline:release config",
    )
    args = parser.parse_args(argv)
    try:
        deps = (args.platform, args.python_version) if args.with_deps else None
        package, sha256 = build(args.version, args.source, args.out, deps)
    except (PackageError, OSError) as error:
        print(f"package: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {"version": args.version, "package": str(package), "sha256": sha256}
            )
        )
    else:
        print(f"version={args.version}")
        print(f"package={package}")
        print(f"sha256={sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
