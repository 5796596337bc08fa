"""Smoke test of the benchmarks: `python bench/run.py --quick` still runs every scenario.

Not a measurement (nothing is timed here): it keeps the benchmark working as paitasks
changes, and checks that it leaves no images (on both engines), no registry images and no
temp trees behind.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from tests.support import REPO, RegistryAPI, engine2

SCENARIOS = (
    "1. planning",
    "2. floor",
    "2. no-op rebuild",
    "3. one leaf changed",
    "4. parallelism: independent images",
    "4. parallelism: chain",
    "5. cold build",
    "6. fresh CI runner, nothing changed",
    "6. fresh CI runner, one leaf changed",
    "6. fresh CI runner, slow RUN before a changed COPY",
    "7. two engines",
)


@pytest.mark.engine
def test_quick_benchmark_runs_every_scenario(
    docker_client: docker.DockerClient, engine2_up: None, registry: RegistryAPI
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"

    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows and rows[0].startswith("| scenario | size | paitasks median | min-max |")
    for scenario in SCENARIOS:
        assert any(row.startswith(f"| {scenario}") for row in rows), f"no row for {scenario}"
    assert "| part of the no-op run" in result.stdout
    # Scenario 7 built on both engines, and says so (from the runs' report.json): the
    # two dockerds, and engine 1 with the BuildKit builder.
    two = [row for row in rows if row.startswith("| 7. two engines")]
    assert len(two) == 3, two
    assert all(
        "builders=default,paitasks-engine2" in row and "built per run: default" in row
        and "paitasks-engine2 " in row.split("built per run:", 1)[1]
        for row in two[:2]
    ), two
    assert "builders=default,paitasks-buildkit" in two[2], two[2]
    assert "paitasks-buildkit " in two[2].split("built per run:", 1)[1], two[2]
    assert "ESTIMATE for N machines" in two[0], two[0]

    run_id = re.search(r"run id (\S+),", result.stderr)
    work = re.search(r"temp trees in (\S+)", result.stderr)
    assert run_id and work, result.stderr
    left = docker_client.api.images(all=True, filters={"label": f"org.paitasks.bench={run_id[1]}"})
    assert left == [], "the benchmark left images behind"
    label = f"label=org.paitasks.bench={run_id[1]}"
    assert engine2("images", "--all", "--quiet", "--filter", label).stdout.strip() == "", (
        "the benchmark left images behind on engine 2"
    )
    # The catalog keeps a repository's name until the registry's garbage collection;
    # what the benchmark must delete is every tag (manifest) it pushed.
    repositories = registry.repositories(f"{run_id[1]}/")
    assert repositories, "the fresh-runner scenario pushed nothing"
    assert all(registry.tags(name) == [] for name in repositories), "registry images left"
    assert not Path(work[1]).exists(), "the benchmark left its temp trees behind"
