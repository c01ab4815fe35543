"""Target vps under mocks: a secret connection with a pinned host key, secrets only on stdin, clear config errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.targets import vps
from tests.conftest import MARKER_VALUES, MARKERS, build_package
from tests.harness import Evaluation, evaluate, is_secret, plain_text

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJv0dmVyeWZha2VrZXlmb3J0ZXN0c29ubHkwMDAw root@vps"
SSH_KEY_MARKER = "MARKER-ssh-private-key-5e11"
HOSTING = {"host": "203.0.113.10", "hostKey": HOST_KEY}
LIVE_ON_ONE_SERVER = {"siteline:target": "vps", "siteline:hosting.azure": None, "siteline:hosting.size": None,
                      "siteline:hosting.instances": 1, "siteline:database.highAvailability": False}
REMOTE = ("command:remote:Command", "command:remote:CopyToRemote")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_package("1.4.0", tmp_path_factory.mktemp("vps-unit"))


def live(release: dict[str, str], hosting: dict[str, Any] | None = None, **overrides: Any) -> Evaluation:
    return evaluate(
        "live", overrides={**LIVE_ON_ONE_SERVER, "siteline:hosting.vps": {**HOSTING, **(hosting or {})}, **overrides},
        secrets={**MARKERS, "siteline:sshPrivateKey": SSH_KEY_MARKER},
        upstream={"organization/siteline/test": {"release": release, "verifiedRelease": release, "contract": 1}})


@pytest.fixture(scope="module")
def evaluated(release: dict[str, str]) -> Evaluation:
    evaluation = live(release)
    assert evaluation.error is None, evaluation.error
    return evaluation


def remote_resources(evaluation: Evaluation) -> list[Any]:
    return [r for r in evaluation.resources if r.type in REMOTE]


def test_every_remote_resource_has_a_secret_connection_with_the_pinned_host_key(evaluated: Evaluation) -> None:
    found = remote_resources(evaluated)
    assert {r.name for r in found} == {"live-vps-bootstrap", "live-vps-package", "live-vps-release"}
    for resource in found:
        connection = resource.inputs["connection"]
        assert is_secret(connection), f"{resource.name}: the connection is not secret as a whole"
        plain = resource.plain_inputs["connection"]
        assert plain["hostKey"] == HOST_KEY and plain["host"] == "203.0.113.10" and plain["port"] == 22
        assert plain["privateKey"] == SSH_KEY_MARKER and plain["user"] == "root"


def test_no_secret_in_plain_text(evaluated: Evaluation) -> None:
    markers = [*MARKER_VALUES, SSH_KEY_MARKER]
    for resource in evaluated.resources:
        visible = plain_text(resource.inputs)
        for marker in markers:
            assert marker not in visible, f"{marker} in plain text in {resource.name}"
    assert all(marker not in plain_text(evaluated.outputs) for marker in markers)
    # The database password (generated) reaches the release only inside the secret env file.
    assert "postgresql://" not in plain_text([r.inputs for r in evaluated.resources])


def test_secrets_travel_on_stdin_and_never_on_a_command_line(evaluated: Evaluation) -> None:
    release = evaluated.named("-vps-release")
    assert is_secret(release.inputs["stdin"])
    env_file = release.plain_inputs["stdin"]
    for marker in MARKER_VALUES:
        assert marker in env_file
    assert "DATABASE_URL=\"postgresql://siteline:MARKERpw" in env_file
    for resource in evaluated.of_type("command:remote:Command"):
        # `environment` would be dropped by a stock sshd (AcceptEnv LANG LC_*): parameters go in the command.
        assert "environment" not in resource.inputs, resource.name
        for step in ("create", "delete"):
            line = resource.plain_inputs[step]
            assert not any(m in line for m in [*MARKER_VALUES, SSH_KEY_MARKER, "postgresql://"]), (resource.name, step)
    assert is_secret(evaluated.named("-vps-bootstrap").inputs["stdin"])
    assert {"stdout", "stderr"} <= set(evaluated.named("-vps-release").additional_secret_outputs)


def test_the_release_command_carries_version_sha256_and_staged_path(evaluated: Evaluation,
                                                                     release: dict[str, str]) -> None:
    create = evaluated.named("-vps-release").plain_inputs["create"]
    staged = f"/srv/siteline/staging/{release['sha256']}.zip"
    assert "VERSION=1.4.0 " in create and f"SHA256={release['sha256']} " in create and f"STAGED={staged} " in create
    assert create.endswith(" vps-release.sh deploy")
    copy = evaluated.named("-vps-package")
    assert copy.plain_inputs["remotePath"] == staged
    assert copy.plain_inputs["source"]["path"] == str(Path(release["package"]).resolve())
    release_resource = evaluated.named("-vps-release")
    assert copy.urn in release_resource.dependencies
    assert evaluated.named("-vps-bootstrap").urn in release_resource.dependencies


def test_outputs(evaluated: Evaluation) -> None:
    outputs = evaluated.plain_outputs
    assert outputs["url"] == "http://www.example.com"
    assert outputs["database"] == {"engine": "postgres", "host": "203.0.113.10", "port": 5432, "name": "site",
                                   "id": "ssh://root@203.0.113.10:22/site", "hostKey": HOST_KEY}
    assert outputs["smtp"] == {"host": "smtp.example.com", "port": 587, "mode": "deliver"}


def test_sink_mode_adds_the_mail_sink_and_points_the_site_at_it(release: dict[str, str]) -> None:
    evaluation = live(release, {"httpPort": 8080, "mailPort": 2600}, **{"siteline:smtp.mode": "sink",
                                                                        "siteline:hosting.domain": None})
    assert evaluation.error is None, evaluation.error
    names = {r.name for r in remote_resources(evaluation)}
    assert {"live-vps-mail-sink-copy", "live-vps-mail-sink"} <= names
    assert 'SMTP_HOST="127.0.0.1"' in evaluation.named("-vps-release").plain_inputs["stdin"]
    assert 'SMTP_PORT="2600"' in evaluation.named("-vps-release").plain_inputs["stdin"]
    assert evaluation.plain_outputs["url"] == "http://203.0.113.10:8080"
    assert evaluation.plain_outputs["smtp"] == {"host": "127.0.0.1", "port": 2600, "mode": "sink"}


def test_a_non_root_user_runs_the_scripts_through_sudo(release: dict[str, str]) -> None:
    evaluation = live(release, {"user": "deploy", "port": 2222})
    assert evaluation.error is None, evaluation.error
    for resource in evaluation.of_type("command:remote:Command"):
        assert resource.plain_inputs["create"].startswith("sudo -n env ")
        assert resource.plain_inputs["connection"]["user"] == "deploy"
    assert "SSH_USER=deploy" in evaluation.named("-vps-bootstrap").plain_inputs["create"]
    assert evaluation.plain_outputs["database"]["id"] == "ssh://deploy@203.0.113.10:2222/site"


def test_retain_on_destroy_reaches_the_delete_command() -> None:
    evaluation = evaluate("dev", overrides={"siteline:target": "vps", "siteline:hosting.vps": HOSTING,
                                            "siteline:database.retainOnDestroy": False},
                          secrets={"siteline:sshPrivateKey": SSH_KEY_MARKER})
    assert evaluation.error is None, evaluation.error
    delete = evaluation.named("-vps-bootstrap").plain_inputs["delete"]
    assert "DB_RETAIN=false" in delete and delete.endswith(" vps-bootstrap.sh down")


@pytest.mark.parametrize(("overrides", "hosting", "expected"), [
    ({"siteline:hosting.instances": 2}, {}, "hosting.instances"),
    ({"siteline:database.highAvailability": True}, {}, "database.highAvailability"),
    ({}, {"bluePort": 8002}, "uses one port twice"),
    ({}, {"hostKey": None}, "hosting.vps.hostKey"),
    ({}, {"hostKey": "not a key"}, "hosting.vps.hostKey"),
])
def test_config_errors_are_clear(release: dict[str, str], overrides: dict[str, Any], hosting: dict[str, Any],
                                 expected: str) -> None:
    block = {k: v for k, v in {**HOSTING, **hosting}.items() if v is not None}
    evaluation = evaluate("live", overrides={**LIVE_ON_ONE_SERVER, "siteline:hosting.vps": block, **overrides},
                          secrets={**MARKERS, "siteline:sshPrivateKey": SSH_KEY_MARKER},
                          upstream={"organization/siteline/test": {"release": release, "verifiedRelease": release}})
    assert evaluation.error is not None and expected in str(evaluation.error)
    assert not evaluation.of_type("command:remote:Command")


def test_a_missing_ssh_key_is_reported(release: dict[str, str]) -> None:
    evaluation = evaluate("live", overrides={**LIVE_ON_ONE_SERVER, "siteline:hosting.vps": HOSTING},
                          secrets=MARKERS, upstream={"organization/siteline/test": {
                              "release": release, "verifiedRelease": release}})
    assert evaluation.error is not None and "sshPrivateKey" in str(evaluation.error)


def test_commands_carry_their_whole_script() -> None:
    """A delete replayed from old state must not depend on files on the server: the library is inlined."""
    line = vps.command_line("vps-release.sh", "remove", {"BASE": "/srv/site line"}, sudo=False)
    assert "BASE='/srv/site line'" in line and "healthy() {" in line and "vps-lib.sh\"" not in line
    assert line.endswith(" vps-release.sh remove")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean() -> None:
    scripts = sorted(str(p.name) for p in vps.SCRIPTS.glob("vps-*.sh"))
    done = subprocess.run(["shellcheck", "-x", *scripts], cwd=vps.SCRIPTS, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_bootstrap_gives_psql_a_scram_verifier_never_the_password() -> None:
    """pulumi-command logs a command's output; psql or the server echoing a failed statement must not show it."""
    bootstrap = (vps.SCRIPTS / "vps-bootstrap.sh").read_text()
    assert "PASSWORD '$verifier'" in bootstrap and "'$password'" not in bootstrap
    function = re.search(r"^scram_verifier\(\) \{\n.*?^\}\n", bootstrap, re.MULTILINE | re.DOTALL)
    assert function, "scram_verifier() is gone from vps-bootstrap.sh"
    password = "Abc123def456ghi789jkl012mno345pq"
    done = subprocess.run(["bash", "-c", function.group(0) + "scram_verifier"], input=password + "\n",
                          capture_output=True, text=True, check=True)
    verifier = done.stdout.strip()
    assert password not in verifier
    # PostgreSQL's format: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (RFC 5802 / 7677).
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)", verifier)
    assert match, verifier
    rounds, salt, stored, server = int(match[1]), *(base64.b64decode(part) for part in match.groups()[1:])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    assert stored == hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    assert server == hmac.new(salted, b"Server Key", "sha256").digest()


def test_a_failure_after_the_switch_switches_nginx_back() -> None:
    """The reload and the check through nginx are the only steps between the switch and `active`; both
    end in switch_back, which restores the upstream before it stops the new colour."""
    release = (vps.SCRIPTS / "vps-release.sh").read_text()
    deploy = release[release.index("deploy() {"):release.index("remove() {")]
    switched = deploy[deploy.index('install_file "$UPSTREAM" root:root 644 <<<"server 127.0.0.1:$port;"'):
                      deploy.rindex('mv -f "$STATE/active.new" "$STATE/active"')]
    assert "systemctl reload nginx || switch_back" in switched
    assert re.search(r'healthy "\$nginx_url" "\$VERSION" \d+ \d+ \|\|\n\s+switch_back', switched)
    back = release[release.index("switch_back() {"):release.index("deploy() {")]
    assert back.index("PREVIOUS_UPSTREAM") < back.index("systemctl reload nginx") < back.index("systemctl stop")


LIVE = "organization/siteline/live"
SOURCE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNvdXJjZWhvc3RrZXlmb3J0ZXN0c29ubHkwMDAw root@live"
TEST_ON_ONE_SERVER = {"siteline:target": "vps", "siteline:hosting.azure": None, "siteline:hosting.size": None,
                      "siteline:database.size": None, "siteline:hosting.vps": HOSTING}


def test_on_vps(release: dict[str, str], refresh_id: str | None = "2026-11-26", **source: Any) -> Evaluation:
    """`test` on a vps, refreshed from a live vps stack (mocked outputs)."""
    database = {"engine": "postgres", "host": "198.51.100.7", "port": 5432, "name": "site",
                "id": "ssh://root@198.51.100.7:2222/site", "hostKey": SOURCE_KEY, **source}
    overrides: dict[str, Any] = {**TEST_ON_ONE_SERVER}
    if refresh_id is None:
        overrides["siteline:database.refreshFrom"] = None
    else:
        overrides["siteline:database.refreshId"] = refresh_id
    return evaluate("test", overrides=overrides, secrets={**MARKERS, "siteline:sshPrivateKey": SSH_KEY_MARKER},
                    upstream={"organization/siteline/dev": {"release": release, "contract": 1},
                              LIVE: {"role": "live", "target": "vps", "contract": 1, "database": database}})


@pytest.fixture(scope="module")
def refreshed(release: dict[str, str]) -> Evaluation:
    evaluation = test_on_vps(release)
    assert evaluation.error is None, evaluation.error
    return evaluation


def test_the_refresh_exists_only_with_refresh_from(release: dict[str, str], refreshed: Evaluation) -> None:
    plain = test_on_vps(release, refresh_id=None)
    assert plain.error is None, plain.error
    assert not plain.of_type("command:local:Command")
    assert 'DATABASE_URL="postgresql://siteline:MARKERpw' in plain.named("-vps-release").plain_inputs["stdin"]
    assert "@127.0.0.1:5432/site\"" in plain.named("-vps-release").plain_inputs["stdin"]
    [command] = refreshed.of_type("command:local:Command")
    assert command.name == "test-vps-refresh"
    assert command.plain_inputs["triggers"] == ["2026-11-26", "site_r2026_11_26"]
    assert "delete" not in command.inputs, "dropping a copy is the release's job, after the switch"


def test_the_refresh_dumps_the_source_over_ssh_and_masks(refreshed: Evaluation) -> None:
    command = refreshed.named("-vps-refresh")
    env = command.plain_inputs["environment"]
    assert env["SOURCE_HOST"] == "198.51.100.7" and env["SOURCE_PORT"] == "2222" and env["SOURCE_USER"] == "root"
    assert env["SOURCE_DB"] == "site" and env["SOURCE_HOST_KEY"] == SOURCE_KEY and env["TARGET_HOST_KEY"] == HOST_KEY
    assert env["COPY_DB"] == "site_r2026_11_26"
    assert '"people"' in env["MASK_SQL"] and '"contact_messages"' in env["MASK_SQL"] and "mask_salt" in env["MASK_SQL"]
    assert env["ON_TARGET"].startswith("env APP_USER=siteline COPY_DB=site_r2026_11_26 DB_PORT=5432 bash -c ")
    assert command.plain_inputs["create"].endswith(" vps-refresh.sh pull")
    salt = refreshed.named("-mask-salt")
    assert salt.plain_inputs["keepers"] == {"refreshId": "2026-11-26"}


def test_the_refresh_keeps_the_key_and_salt_secret(refreshed: Evaluation) -> None:
    command = refreshed.named("-vps-refresh")
    assert is_secret(command.inputs["stdin"])
    stdin = command.plain_inputs["stdin"]
    assert stdin.startswith("MARKERpw") and stdin.endswith(SSH_KEY_MARKER)
    markers = [*MARKER_VALUES, SSH_KEY_MARKER]
    for resource in refreshed.resources:
        assert not any(m in plain_text(resource.inputs) for m in markers), resource.name
    assert "MARKERpw" not in plain_text(command.inputs)
    assert not any(m in plain_text(refreshed.outputs) for m in markers)
    assert {"stdout", "stderr"} <= set(command.additional_secret_outputs)


def test_the_release_switches_to_the_copy_after_the_refresh(refreshed: Evaluation) -> None:
    release = refreshed.named("-vps-release")
    assert refreshed.named("-vps-refresh").urn in release.dependencies
    assert "@127.0.0.1:5432/site_r2026_11_26\"" in release.plain_inputs["stdin"]
    create = release.plain_inputs["create"]
    assert "DB_CURRENT=site_r2026_11_26 " in create and "DB_NAME=site " in create
    assert refreshed.plain_outputs["database"]["name"] == "site_r2026_11_26"
    assert refreshed.plain_outputs["database"]["id"] == "ssh://root@203.0.113.10:22/site_r2026_11_26"


@pytest.mark.parametrize("source", [{"id": "arn:aws:rds:x"}, {"hostKey": "not a key"}, {"id": "ssh://h:22/"},
                                    {"id": "ssh://h:port/site"}])
def test_a_source_a_vps_cannot_reach_is_refused(release: dict[str, str], source: dict[str, str]) -> None:
    evaluation = test_on_vps(release, **source)
    assert evaluation.error is not None and "a vps refresh needs ssh://user@host:port/dbname" in str(evaluation.error)
    assert not evaluation.of_type("command:local:Command")
