"""The README's commands are true: CI runs its test command, and its main job works."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

from paitasks.cli import parser
from tests.support import REPO, RegistryAPI, finished, ran

README = (REPO / "README.md").read_text(encoding="utf-8")


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)]


def test_quick_start_has_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = [
        line
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci_lines[-1] == quick_start_commands()[1]


@pytest.mark.engine
def test_main_job_builds_and_pushes_src_fixtures(
    registry: RegistryAPI, docker_client: docker.DockerClient
) -> None:
    result = subprocess.run(
        ["bash", "-c", quick_start_commands()[0]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for image in ("base-image", "component-b", "tools", "argbase", "watchdog", "rest-server"):
        served = registry.manifest_digest(f"paitasks/{image}", "latest")
        assert served is not None, image
        local = docker_client.images.get(f"{registry.address}/paitasks/{image}:latest")
        manifest = registry.manifest(f"paitasks/{image}", served)
        assert manifest["config"]["digest"] == local.id, image  # the engine's image
    assert not list((REPO / "src-fixtures").glob("*/dependency"))
    assert not list((REPO / "src-fixtures").glob("*/generated"))


def test_two_line_dodo_for_openpai_layout(tmp_path: Path) -> None:
    snippet = re.search(r"```python\n(from paitasks.dodo import.*?)```", README, re.DOTALL)
    assert snippet is not None
    assert len(snippet.group(1).strip().splitlines()) == 2
    (tmp_path / "dodo.py").write_text(snippet.group(1))
    shutil.copytree(REPO / "src-fixtures", tmp_path / "src")
    result = subprocess.run(
        [sys.executable, "-m", "doit", "list", "--all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "build:componentB" in result.stdout
    assert "build-image:component-b" in result.stdout
    assert (tmp_path / ".paitasks").is_dir()


@pytest.mark.engine
def test_walkthrough_commands_work(registry: RegistryAPI) -> None:
    block = re.search(r"```bash walkthrough\n(.*?)```", README, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    outputs = []
    for command in commands:
        command = command.replace("pai-build", str(Path(sys.executable).parent / "pai-build"))
        result = subprocess.run(
            ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        outputs.append(result.stdout)
    assert outputs[-1].split() == ["componentA", "1.0", "componentB", "test-build"]
    assert registry.manifest_digest("paitasks/component-b", "latest") is not None
    again = subprocess.run(
        [sys.executable, "-m", "doit", "build:componentB"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    built = [task for task in finished(again.stdout) if task.startswith("build-image:")]
    assert not any(ran(again.stdout, task) for task in built), again.stdout


def test_ci_example_is_valid_and_its_commands_parse() -> None:
    workflow = yaml.safe_load((REPO / "examples" / "github-actions.yml").read_text())
    steps = workflow["jobs"]["build"]["steps"]
    commands = [
        line.strip()
        for step in steps
        for line in str(step.get("run", "")).splitlines()
        if line.strip().startswith(("pai-build", "doit"))
    ]
    assert any(line.startswith("pai-build plan") for line in commands), commands
    for line in commands:
        if line.startswith("pai-build"):
            parser().parse_args(shlex.split(line)[1:])  # exits on an unknown option
    # Hosted runners start empty: the registry is read on pull requests too.
    login = next(step for step in steps if "login-action" in str(step.get("uses")))
    assert "if" not in login
