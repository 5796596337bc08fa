"""The build context as the build reads it: .dockerignore, COPY sources, the hash cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docker.utils.build import PatternMatcher, exclude_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.context import (
    HashCache,
    every_path,
    ignored,
    load_sdk_matcher_apart,
    reads,
    reads_under,
    scan_context,
)
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


def _make_tree(root: Path, entries: list[tuple[list[str], str]]) -> None:
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


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_trees)
def test_every_path_lists_what_the_sdk_lists(
    tmp_path: Path, entries: list[tuple[list[str], str]]
) -> None:
    root = tmp_path / "ctx"
    _make_tree(root, entries)
    assert every_path(str(root)) == exclude_paths(str(root), [])


# .dockerignore lines built from the same names, with exceptions, `**`, `*` and `/`.
_patterns = st.lists(
    st.builds(
        lambda bang, parts, lead: ("!" if bang else "") + ("/" if lead else "") + "/".join(parts),
        st.booleans(),
        st.lists(st.sampled_from(["a", "b", ".c", "d e", "*", "**", "?", "[ab]"]), min_size=1,
                 max_size=3),
        st.booleans(),
    ),
    max_size=5,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_trees, patterns=_patterns)
def test_the_sdk_matcher_loaded_apart_is_the_sdks(
    tmp_path: Path, entries: list[tuple[list[str], str]], patterns: list[str]
) -> None:
    """sdk_matcher loads the SDK's own module without its package: same answers."""
    root = tmp_path / "ctx"
    _make_tree(root, entries)
    module = load_sdk_matcher_apart()
    assert module.__name__.startswith("paitasks.")
    assert module.exclude_paths(str(root), patterns) == exclude_paths(str(root), patterns)
    for path in every_path(str(root)):
        # types-docker says matches() takes a PathLike; the SDK itself passes str
        assert module.PatternMatcher(patterns).matches(path) == PatternMatcher(patterns).matches(
            path  # type: ignore[arg-type]
        )
        assert ignored(path, patterns) == bool(
            PatternMatcher(patterns).matches(path)  # type: ignore[arg-type]
        )


def test_the_sdk_matcher_does_not_import_the_sdk(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "skip.log").write_text("x")
    code = (
        "import sys\n"
        "from paitasks.context import sdk_matcher\n"
        f"kept = sdk_matcher().exclude_paths({str(tmp_path)!r}, ['*.log'])\n"
        "assert kept == {'keep.txt'}, kept\n"
        "print(sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


_segments = st.sampled_from(["dependency", "generated", "files", "*", "dep*", "?enerated", "[dg]*"])


@given(
    sources=st.lists(st.lists(_segments, min_size=1, max_size=3).map("/".join), max_size=4),
    folder=st.sampled_from(["dependency", "generated"]),
    rest=st.lists(_segments.filter(lambda s: not set(s) & set("*?[")), max_size=3),
)
def test_reads_under_is_false_only_when_nothing_under_the_folder_is_read(
    sources: list[str], folder: str, rest: list[str]
) -> None:
    path = "/".join([folder, *rest])
    if reads(path, tuple(sources)):
        assert reads_under(folder, tuple(sources))
    assert reads_under(folder, None)
