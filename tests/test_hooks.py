"""build-pre.sh / build-post.sh: run with bash, from the root, output passed on line by
line; skipped while the key of what they declare they read is unchanged."""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from paitasks.contents import Contents, folder_temp_entries, hook_output
from paitasks.context import HashCache
from paitasks.errors import HookError, PaiTasksError
from paitasks.hooks import TAIL_LINES, run_hook, run_or_skip
from paitasks.settings import STATE_DIR
from paitasks.tempfolders import TempFolders
from tests.support import round_chain as chain
from tests.support import round_spec as spec


def layout(tmp_path: Path, script: str, mode: int = 0o644) -> tuple[Path, Path, Path, Path]:
    """A tree with `src/comp/build/build-pre.sh`; returns (root, src, folder, hook)."""
    root = tmp_path / "repo"
    src = root / "src"
    folder = src / "comp"
    (folder / "build").mkdir(parents=True)
    hook = folder / "build" / "build-pre.sh"
    hook.write_text(script)
    os.chmod(hook, mode)
    return root, src, folder, hook


def run(root: Path, src: Path, folder: Path, hook: Path, lines: list[str] | None = None) -> None:
    run_hook(
        hook,
        component="comp",
        folder=folder,
        src=src,
        root=root,
        on_line=None if lines is None else lines.append,
    )


def test_non_executable_hook_runs_with_bash_from_the_root(tmp_path: Path) -> None:
    # `[[ ]]` and arrays are bash, not sh: the hook really runs with bash
    script = 'declare -a words=(one two)\n[[ -n "${words[1]}" ]] && pwd > ran-here.txt\n'
    root, src, folder, hook = layout(tmp_path, script, 0o644)
    run(root, src, folder, hook)
    assert (root / "ran-here.txt").read_text().strip() == str(root)
    assert not (folder / "build" / "ran-here.txt").exists()


def test_hook_environment_names_component_and_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = (
        'echo "component=$PAI_COMPONENT"\n'
        'echo "component_dir=$PAI_COMPONENT_DIR"\n'
        'echo "src_dir=$PAI_SRC_DIR"\n'
        'echo "root_dir=$PAI_ROOT_DIR"\n'
        'echo "inherited=$PAITASKS_TEST_INHERITED"\n'
    )
    root, src, folder, hook = layout(tmp_path, script)
    lines: list[str] = []
    monkeypatch.setenv("PAITASKS_TEST_INHERITED", "yes")
    monkeypatch.setenv("PAI_COMPONENT", "stale-value-from-the-caller")
    run(root, src, folder, hook, lines)
    assert lines == [
        "component=comp",
        f"component_dir={folder}",
        f"src_dir={src}",
        f"root_dir={root}",
        "inherited=yes",
    ]


def test_every_output_line_reaches_on_line(tmp_path: Path) -> None:
    script = (
        "echo out-1\n"
        "echo err-1 >&2\n"
        "echo\n"
        "printf 'out-2\\nerr-2\\n'\n"
        "echo err-3 >&2\n"
        "printf 'no-newline-at-end'\n"
    )
    root, src, folder, hook = layout(tmp_path, script)
    lines: list[str] = []
    run(root, src, folder, hook, lines)
    assert lines == ["out-1", "err-1", "", "out-2", "err-2", "err-3", "no-newline-at-end"]


def test_hook_does_not_read_the_callers_stdin(tmp_path: Path) -> None:
    script = 'if read -r line; then echo "read:$line"; else echo "eof"; fi\n'
    root, src, folder, hook = layout(tmp_path, script)
    lines: list[str] = []
    run(root, src, folder, hook, lines)
    assert lines == ["eof"]


def test_failing_hook_names_component_file_code_and_last_lines(tmp_path: Path) -> None:
    script = (
        "for i in $(seq 1 50); do\n"
        '  if (( i % 2 )); then echo "<line $i>"; else echo "<line $i>" >&2; fi\n'
        "done\n"
        "exit 7\n"
    )
    root, src, folder, hook = layout(tmp_path, script)
    lines: list[str] = []
    with pytest.raises(HookError) as caught:
        run(root, src, folder, hook, lines)
    message = str(caught.value)
    assert isinstance(caught.value, PaiTasksError)
    assert "comp" in message
    assert "build-pre.sh" in message
    assert "exit 7" in message
    assert TAIL_LINES == 30
    shown = [n for n in range(1, 51) if f"<line {n}>" in message]
    assert shown == list(range(21, 51))  # the last 30 lines, stdout and stderr alike
    assert lines == [f"<line {n}>" for n in range(1, 51)]  # on_line still saw them all


def test_failing_hook_without_output_says_so(tmp_path: Path) -> None:
    root, src, folder, hook = layout(tmp_path, "exit 3\n")
    with pytest.raises(HookError) as caught:
        run(root, src, folder, hook)
    message = str(caught.value)
    assert "exit 3" in message and "build-pre.sh" in message and "comp" in message


def test_hook_mode_is_unchanged(tmp_path: Path) -> None:
    root, src, folder, hook = layout(tmp_path, "echo fine\n", 0o640)
    run(root, src, folder, hook)
    assert stat.S_IMODE(hook.stat().st_mode) == 0o640
    hook.write_text("exit 1\n")
    with pytest.raises(HookError):
        run(root, src, folder, hook)
    assert stat.S_IMODE(hook.stat().st_mode) == 0o640


def test_executable_hook_with_sh_shebang_still_runs_with_bash(tmp_path: Path) -> None:
    # OpenPAI runs hooks with bash; a `#!/bin/sh` line must not change that
    script = '#!/bin/sh\necho "bash=${BASH_VERSION:+yes}"\n'
    root, src, folder, hook = layout(tmp_path, script, 0o755)
    lines: list[str] = []
    run(root, src, folder, hook, lines)
    assert lines == ["bash=yes"]
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755


def test_hook_that_leaves_a_background_child_still_returns(tmp_path: Path) -> None:
    """A server started with `&` keeps the output pipe open; the hook is done anyway."""
    marker = tmp_path / "child-pid"
    root, src, folder, hook = layout(tmp_path, f"sleep 300 &\necho $! > {marker}\necho started\n")
    lines: list[str] = []
    finished = threading.Event()

    def target() -> None:
        run(root, src, folder, hook, lines)
        finished.set()

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    try:
        # Bounded wait for completion, not a speed check: blocking here means it waits
        # for the 300-second child.
        assert finished.wait(timeout=60), "run_hook waited for the hook's background child"
        assert lines == ["started"]
    finally:
        os.kill(int(marker.read_text()), signal.SIGKILL)


def test_missing_bash_names_the_component_and_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, src, folder, hook = layout(tmp_path, "echo never\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    with pytest.raises(HookError, match=r"component comp: cannot run .*build-pre\.sh: No such"):
        run(root, src, folder, hook)


# --- skipped on declared inputs -------------------------------------------------------


def contents(root: Path) -> Contents:
    return Contents(TempFolders(root, root / STATE_DIR), HashCache(None))


def test_a_declared_hook_is_skipped_and_its_output_stands_in(tmp_path: Path) -> None:
    lib = spec(tmp_path, "lib")
    hook = Path(lib.folder) / "build" / "build-pre.sh"
    hook.write_text("mkdir -p generated\n")
    (tmp_path / "input.txt").write_text("1")
    lib = dataclasses.replace(lib, pre_hook=str(hook), declared=("input.txt",))
    runs: list[int] = []

    def run() -> None:
        runs.append(1)
        (Path(lib.folder) / "generated").mkdir()
        (Path(lib.folder) / "generated" / "out.txt").write_text(f"run {len(runs)}")

    cache = HashCache(None)
    found = contents(tmp_path)
    assert run_or_skip(found, lib, hook, run) is False
    made = folder_temp_entries(Path(lib.folder), cache)
    found.temp.remove()  # the end of the run

    found = contents(tmp_path)  # the next run
    assert run_or_skip(found, lib, hook, run) is True
    assert runs == [1] and not found.temp.is_real(lib)
    # What the hook makes counts by its key, whether made, skipped or never run here.
    key = found.hook_key(lib, "pre")
    assert found.entries(lib, "pre") == {hook_output("pre"): f"key {key}"}
    assert made and "generated/out.txt" in made
    assert found.temp.ensure_real(lib, "pre") is True  # an image must build: put back
    assert (Path(lib.folder) / "generated" / "out.txt").read_text() == "run 1"
    found.temp.remove()

    found = contents(tmp_path)
    (tmp_path / "input.txt").write_text("2")
    assert run_or_skip(found, lib, hook, run) is False
    assert (Path(lib.folder) / "generated" / "out.txt").read_text() == "run 2"


def test_an_undeclared_hook_always_runs_with_its_copies_made(tmp_path: Path) -> None:
    lib, _, _ = chain(tmp_path)
    app = spec(tmp_path, "app2")
    hook = Path(app.folder) / "build" / "build-pre.sh"
    hook.write_text("true\n")
    app = dataclasses.replace(app, copies=(lib,), pre_hook=str(hook))
    seen: list[bool] = []

    def run() -> None:
        seen.append((Path(app.folder) / "dependency" / "lib" / "data" / "a.txt").exists())

    for _ in range(2):
        assert run_or_skip(contents(tmp_path), app, hook, run) is False
    assert seen == [True, True]
