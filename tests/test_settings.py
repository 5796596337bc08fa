"""Run settings: doit variables beat the environment, which beats the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paitasks.errors import PaiTasksError
from paitasks.settings import FORMERLY, SOURCES, Settings, resolve_settings

CWD = Path("/work/tree")

# setting -> (value from a doit variable, value from the environment, expected results:
#             from the variable, from the environment, the default)
CASES: dict[str, tuple[str, str, Any, Any, Any]] = {
    "src": ("from-var", "from-env", CWD / "from-var", CWD / "from-env", CWD / "src"),
    "config": (
        "var/services-configuration.yaml",
        "/etc/pai",
        CWD / "var" / "services-configuration.yaml",
        Path("/etc/pai"),
        None,
    ),
    "network": ("none", "bridge", "none", "bridge", "host"),
    "variant": ("k8s", "yarn", "k8s", "yarn", None),
    "build_tool": ("classic", "buildx", "classic", "buildx", None),
    "verbose": ("1", "yes", True, True, False),
    "platform": ("linux/amd64", "linux/arm64", "linux/amd64", "linux/arm64", None),
    "pull": ("1", "no", True, False, False),
    "builders": ("a,b,a", " m1 , ", ("a", "b"), ("m1",), ()),
    "tries": ("3", "8", 3, 8, 5),
    "retry_time": ("30", "2.5", 30.0, 2.5, 120.0),
    "stall": ("10", "0.5", 10.0, 0.5, 60.0),
    "send_limit": ("0", "1024", 0, 1024, 256),
    "revision": ("0a1b2c", "3d4e5f", "0a1b2c", "3d4e5f", None),
    "force": ("1", "no", True, False, False),
}


def test_every_setting_has_a_case() -> None:
    assert set(CASES) | {"build_args", "publish"} == set(SOURCES)


def test_publish_fingerprints_needs_a_registry_and_names_both_sources() -> None:
    with_config = {"config": "cfg"}
    assert resolve_settings({**with_config, "publish": "fingerprints"}, environ={},
                            cwd=CWD).publish == "fingerprints"
    from_env = resolve_settings(with_config, environ={"PAI_PUBLISH": "fingerprints"}, cwd=CWD)
    assert from_env.publish == "fingerprints"
    assert resolve_settings(with_config, environ={}, cwd=CWD).publish is None
    with pytest.raises(PaiTasksError, match=r"^publish=tags \(PAI_PUBLISH\): unknown"):
        resolve_settings({**with_config, "publish": "tags"}, environ={}, cwd=CWD)
    with pytest.raises(PaiTasksError, match=r"publish=fingerprints \(PAI_PUBLISH\) needs a "
                       r"registry: give its settings with config=DIR \(PAI_CONFIG\)"):
        resolve_settings({"publish": "fingerprints"}, environ={}, cwd=CWD)


def test_build_args_file(tmp_path: Path) -> None:
    path = tmp_path / "args"
    path.write_text("# comment\n\nB=2\nA = x=y \nFROM_ENV\nB=3\n")
    settings = resolve_settings({"build_args": str(path)}, environ={"FROM_ENV": "e"}, cwd=CWD)
    assert settings.build_args == (("A", "x=y"), ("B", "3"), ("FROM_ENV", "e"))
    again = resolve_settings({}, environ={"PAI_BUILD_ARGS": str(path), "FROM_ENV": "e"})
    assert again.build_args == settings.build_args


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\n=secret\n", ":2: expected KEY=VALUE"),
        ("MY KEY=secret\n", ":1: expected KEY=VALUE"),
        ("UNSET\n", ":1: build arg UNSET has no value and is not set in the environment"),
    ],
)
def test_bad_build_args_file_names_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "args"
    path.write_text(text)
    with pytest.raises(PaiTasksError) as caught:
        resolve_settings({"build_args": str(path)}, environ={}, cwd=CWD)
    assert str(caught.value) == f"{path}{message}" or str(caught.value).startswith(
        f"{path}{message}"
    )
    assert "secret" not in str(caught.value)  # values are never echoed


def test_missing_build_args_file(tmp_path: Path) -> None:
    with pytest.raises(PaiTasksError, match=r"build_args=.*cannot read"):
        resolve_settings({"build_args": str(tmp_path / "nope")}, environ={}, cwd=CWD)


@pytest.mark.parametrize("name", sorted(CASES))
def test_variable_beats_environment_beats_default(name: str) -> None:
    from_var, from_env, want_var, want_env, want_default = CASES[name]
    var, env = SOURCES[name]
    both = resolve_settings({var: from_var}, environ={env: from_env}, cwd=CWD)
    assert getattr(both, name) == want_var
    only_env = resolve_settings({}, environ={env: from_env}, cwd=CWD)
    assert getattr(only_env, name) == want_env
    neither = resolve_settings({}, environ={}, cwd=CWD)
    assert getattr(neither, name) == want_default


def test_the_environment_variable_names() -> None:
    environ = {
        "PAI_SRC": "s",
        "PAI_CONFIG": "c",
        "PAI_BUILD_NETWORK": "none",
        "PAI_BUILD_VARIANT": "k8s",
        "PAI_BUILD_TOOL": "classic",
        "PAI_VERBOSE": "true",
    }
    settings = resolve_settings({}, environ=environ, cwd=CWD)
    assert settings == Settings(
        src=CWD / "s",
        config=CWD / "c",
        network="none",
        variant="k8s",
        build_tool="classic",
        verbose=True,
    )


def test_defaults() -> None:
    assert resolve_settings({}, environ={}, cwd=CWD) == Settings(src=CWD / "src")
    assert Settings(src=CWD / "src") == Settings(
        src=CWD / "src", config=None, network="host", variant=None, build_tool=None, verbose=False
    )


def test_default_src_is_the_callers(tmp_path: Path) -> None:
    assert resolve_settings({}, environ={}, default_src="src-fixtures", cwd=tmp_path).src == (
        tmp_path / "src-fixtures"
    )


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAI_BUILD_VARIANT", "yarn")
    monkeypatch.setenv("PAI_SRC", "/abs/src")
    settings = resolve_settings({})
    assert settings.variant == "yarn"
    assert settings.src == Path("/abs/src")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("src", "/work/tree/src"),
        ("trees/openpai/src", "/work/tree/trees/openpai/src"),
        ("./src/", "/work/tree/src"),
        ("../other/src", "/work/other/src"),
        ("a/../b/./src", "/work/tree/b/src"),
        ("/abs/src", "/abs/src"),
        ("  spaced  ", "/work/tree/spaced"),
    ],
)
def test_relative_src_resolves_against_cwd(given: str, expected: str) -> None:
    settings = resolve_settings({"src": given}, environ={}, cwd=CWD)
    assert settings.src == Path(expected)
    assert settings.src.is_absolute()


def test_src_defaults_to_the_process_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_settings({"src": "mine"}, environ={}).src == tmp_path / "mine"


def test_relative_config_resolves_against_cwd() -> None:
    settings = resolve_settings({"config": "cfg"}, environ={}, cwd=CWD)
    assert settings.config == CWD / "cfg"


def test_root_and_state() -> None:
    settings = resolve_settings({"src": "repo/src"}, environ={}, cwd=CWD)
    assert settings.root == CWD / "repo"
    assert settings.state == CWD / "repo" / ".paitasks"
    fixtures = resolve_settings({"src": "/x/src-fixtures/"}, environ={}, cwd=CWD)
    assert fixtures.root == Path("/x")
    assert fixtures.state == Path("/x/.paitasks")


def test_blank_values_count_as_unset() -> None:
    settings = resolve_settings({}, environ={"PAI_BUILD_VARIANT": "  ", "PAI_SRC": ""}, cwd=CWD)
    assert settings.variant is None
    assert settings.src == CWD / "src"


@pytest.mark.parametrize(
    ("variable", "env"), [("build_tool", "PAI_BUILD_TOOL"), ("builder", "PAI_BUILDER")]
)
@pytest.mark.parametrize("source", ["variable", "environment"])
@pytest.mark.parametrize("value", ["docker", "BUILDX", "kaniko"])
def test_unknown_build_tool_is_an_error_naming_both_sources(
    source: str, value: str, variable: str, env: str
) -> None:
    variables = {variable: value} if source == "variable" else {}
    environ = {env: value} if source == "environment" else {}
    with pytest.raises(PaiTasksError) as caught:
        resolve_settings(variables, environ=environ, cwd=CWD)
    message = str(caught.value)
    assert "build_tool=" in message
    assert "PAI_BUILD_TOOL" in message
    assert value in message
    assert "buildx" in message and "classic" in message  # what to choose instead


@pytest.mark.parametrize("value", ["buildx", "classic", " classic "])
def test_known_build_tools(value: str) -> None:
    assert resolve_settings({"build_tool": value}, environ={}, cwd=CWD).build_tool == value.strip()


@pytest.mark.parametrize("name", sorted(FORMERLY))
def test_former_names_are_still_read_and_the_new_ones_win(name: str) -> None:
    """`builder=`/PAI_BUILDER and `engines=`/PAI_ENGINES, the names before the glossary."""
    from_var, from_env, want_var, want_env, _ = CASES[name]
    old_var, old_env = FORMERLY[name]
    assert getattr(resolve_settings({old_var: from_var}, environ={}, cwd=CWD), name) == want_var
    assert getattr(resolve_settings({}, environ={old_env: from_env}, cwd=CWD), name) == want_env
    var, _ = SOURCES[name]
    both = resolve_settings({var: from_env, old_var: from_var}, environ={}, cwd=CWD)
    assert getattr(both, name) == want_env


@pytest.mark.parametrize(
    ("value", "expected"),
    [("default", None), ("host", "host"), ("none", "none"), ("bridge", "bridge")],
)
def test_network(value: str, expected: str | None) -> None:
    assert resolve_settings({"network": value}, environ={}, cwd=CWD).network == expected
    from_env = resolve_settings({}, environ={"PAI_BUILD_NETWORK": value}, cwd=CWD)
    assert from_env.network == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("YES", True),
        ("on", True),
        (" yes ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_verbose_parsing(value: str, expected: bool) -> None:
    assert resolve_settings({"verbose": value}, environ={}, cwd=CWD).verbose is expected
    assert resolve_settings({}, environ={"PAI_VERBOSE": value}, cwd=CWD).verbose is expected


def test_variable_false_beats_environment_true() -> None:
    settings = resolve_settings({"verbose": "0"}, environ={"PAI_VERBOSE": "1"}, cwd=CWD)
    assert settings.verbose is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("tries", "0"), ("tries", "2.5"), ("tries", "many"), ("retry_time", "-1"),
     ("stall", "inf"), ("stall", "nan"), ("retry_time", "0"), ("send_limit", "-1"),
     ("send_limit", "1.5")],
)
def test_registry_patience_must_be_a_positive_number(name: str, value: str) -> None:
    var, env = SOURCES[name]
    with pytest.raises(PaiTasksError, match=rf"^{var}={value} \({env}\): expected .* (above|or)"):
        resolve_settings({var: value}, environ={}, cwd=CWD)
