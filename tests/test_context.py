"""The build context as the build reads it: .dockerignore, COPY sources, the hash cache."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.context import HashCache, every_path, reads, scan_context
from paitasks.dockerfile import parse_dockerfile_text


def make_context(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("path", "sources", "expected"),
    [
        ("app/x.sh", None, True),
        ("app/x.sh", ("app",), True),
        ("app", ("app",), True),
        ("apps/x.sh", ("app",), False),
        ("app/x.sh", ("app/*.sh",), True),
        ("app/sub/x.sh", ("app/*.sh",), False),
        ("app/x.txt", ("app/*.sh",), False),
        ("a", ("app/*.sh",), False),
        ("dependency/componentA/generated/v", ("dependency/componentA",), True),
        ("x", (), False),
    ],
)
def test_reads(path: str, sources: tuple[str, ...] | None, expected: bool) -> None:
    assert reads(path, sources) is expected


def test_scan_applies_dockerignore_and_sources(tmp_path: Path) -> None:
    make_context(
        tmp_path,
        {
            ".dockerignore": "**/*.log\nsecrets/\n",
            "build/a.dockerfile": "FROM x\nCOPY app /app\n",
            "build/b.dockerfile": "FROM x\n",
            "app/run.sh": "echo",
            "app/debug.log": "noise",
            "secrets/token": "t",
            "other/file": "o",
        },
    )
    dockerfile = tmp_path / "build" / "a.dockerfile"
    sources = parse_dockerfile_text(dockerfile.read_text(), dockerfile).context
    assert sources == ("app",)
    entries = scan_context(tmp_path, dockerfile, "buildx", HashCache(None), sources)
    assert set(entries) == {"app", "app/run.sh", "build/a.dockerfile"}
    everything = scan_context(tmp_path, dockerfile, "buildx", HashCache(None), None)
    assert "other/file" in everything and "build/b.dockerfile" in everything
    assert not any(name.endswith(".log") or name.startswith("secrets") for name in everything)


def test_entries_record_mode_and_links(tmp_path: Path) -> None:
    make_context(tmp_path, {"build/a.dockerfile": "FROM x\n", "run.sh": "echo"})
    os.symlink("run.sh", tmp_path / "link")
    dockerfile = tmp_path / "build" / "a.dockerfile"
    before = scan_context(tmp_path, dockerfile, "classic", HashCache(None))
    assert before["link"] == "l run.sh"
    (tmp_path / "run.sh").chmod(0o755)
    after = scan_context(tmp_path, dockerfile, "classic", HashCache(None))
    assert before["run.sh"] != after["run.sh"]


def test_hash_cache_reuses_old_files_but_not_racy_ones(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("one")
    old = time.time() - 60
    os.utime(path, (old, old))
    cache = HashCache(tmp_path / "cache.json")
    first = cache.digest(str(path), os.stat(path))
    cache.save()
    reloaded = HashCache(tmp_path / "cache.json")
    # Same size and mtime: the stored hash is used (proved by changing the content).
    path.write_text("two")
    os.utime(path, (old, old))
    assert reloaded.digest(str(path), os.stat(path)) == first
    # A file modified just now is never trusted to its timestamp.
    path.write_text("six")
    fresh = reloaded.digest(str(path), os.stat(path))
    path.write_text("ten")
    assert reloaded.digest(str(path), os.stat(path)) != fresh


# Paths of a random folder tree: files, folders, links to folders (not entered) and
# dangling links. With no .dockerignore, paitasks lists them itself instead of loading the
# docker SDK: both lists must be the same.
_parts = st.sampled_from(["a", "b", ".c", "d e", "Dockerfile"])
_trees = st.lists(
    st.tuples(
        st.lists(_parts, min_size=1, max_size=3), st.sampled_from(["file", "dir", "link"])
    ),
    max_size=10,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_trees)
def test_every_path_lists_what_the_sdk_lists(tmp_path: Path, entries: list) -> None:
    root = tmp_path / "ctx"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for parts, kind in entries:
        path = root.joinpath(*parts)
        if any(p.is_file() or p.is_symlink() for p in path.parents) or os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            path.write_text("x")
        elif kind == "dir":
            path.mkdir()
        else:
            path.symlink_to(root / parts[0] if len(parts) > 1 else root / "missing")
    assert every_path(str(root)) == exclude_paths(str(root), [])
