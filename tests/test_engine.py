"""The engine, buildx, the classic builder and the registry, driven for real."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import docker
import pytest
from python_on_whales import docker as whales

from paitasks import engine as engine_module
from paitasks.engine import (
    BuildRequest,
    Engine,
    build_tool,
    buildx_command,
    dockerd_takes_named_contexts,
    registry_hiccup,
    run_cli,
)
from paitasks.errors import EngineError
from tests.support import RegistryAPI, busybox_context, hello_context, run_on_engine1


def test_buildx_is_the_default_build_tool_here() -> None:
    # dev-engine installs the plugin; the project relies on it being there in CI.
    assert build_tool(None) == "buildx"
    assert build_tool("classic") == "classic"


@pytest.mark.parametrize("builder", ["buildx", "classic"])
def test_engine_builds_and_runs(builder: str, prefix: str, cleanup: None, tmp_path: Path) -> None:
    engine = Engine()
    dockerfile = hello_context(tmp_path, f"from-{builder}")
    lines: list[str] = []
    request = BuildRequest(
        (f"{prefix}-smoke",), dockerfile, tmp_path, {"org.paitasks.test": builder},
        tool=builder,
    )
    image_id = engine.build(request, lines.append)
    assert image_id.startswith("sha256:")
    assert lines, "the build's output reaches the caller"
    assert run_on_engine1(f"{prefix}-smoke", "cat", "/hello") == f"from-{builder}"
    local = engine.local_images()[f"{prefix}-smoke"]
    assert local.id == image_id
    assert local.labels["org.paitasks.test"] == builder


@pytest.mark.parametrize("builder", ["buildx", "classic"])
def test_failed_build_names_image_and_shows_output(
    builder: str, prefix: str, cleanup: None, tmp_path: Path
) -> None:
    dockerfile = busybox_context(tmp_path)
    dockerfile.write_text(
        dockerfile.read_text() + "RUN echo the-reason-it-broke && exit 3\n", encoding="utf-8"
    )
    with pytest.raises(EngineError) as caught:
        Engine().build(BuildRequest((f"{prefix}-broken",), dockerfile, tmp_path, tool=builder))
    message = str(caught.value)
    assert f"{prefix}-broken" in message
    assert "the-reason-it-broke" in message
    error = caught.value
    assert error.exit_code and "the-reason-it-broke" in error.output
    # buildx is a command (its real one); the classic builder is an API call.
    assert (error.command[-1] == str(tmp_path)) if builder == "buildx" else not error.command


def test_push_reaches_registry_with_same_digest(
    busybox_image: str, prefix: str, registry: RegistryAPI, docker_client: docker.DockerClient
) -> None:
    repository = f"{prefix}/smoke"
    remote = f"{registry.address}/{repository}:v1"
    whales.image.tag(busybox_image, remote)
    whales.image.push(remote, quiet=True)
    served = registry.manifest_digest(repository, "v1")
    assert served is not None and served.startswith("sha256:")
    repo_digests = docker_client.images.get(remote).attrs["RepoDigests"]
    assert f"{registry.address}/{repository}@{served}" in repo_digests
    assert registry.tags(repository) == ["v1"]


@pytest.mark.engine
def test_each_engine_keeps_one_client_per_thread(engine: Engine) -> None:
    """SDK clients are not shared between threads, nor between Engines."""
    client = engine.client
    assert engine.client is client
    other_thread: list[docker.DockerClient] = []
    worker = threading.Thread(target=lambda: other_thread.append(engine.client))
    worker.start()
    worker.join(timeout=60)
    assert other_thread and other_thread[0] is not client
    assert Engine().client is not client


def test_unreachable_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(EngineError, match=r"cannot reach the Docker engine.*dev-engine up"):
        Engine().check()


@pytest.mark.parametrize(
    ("environ", "via_sdk"),
    [
        ({"DOCKER_HOST": "ssh://user@host"}, True),
        ({"DOCKER_HOST": "tcp://127.0.0.1:1", "DOCKER_TLS_VERIFY": "1"}, True),
        ({"DOCKER_HOST": "tcp://127.0.0.1:1"}, False),
        ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, False),
    ],
)
def test_reads_leave_tls_and_ssh_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], via_sdk: bool
) -> None:
    """The engine's socket is read directly only where plain HTTP reaches it."""
    for key in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    if via_sdk:
        assert engine_module._api_get("/_ping") is None
    else:
        with pytest.raises(EngineError, match="cannot reach the Docker engine"):
            engine_module._api_get("/_ping", timeout=2)


@pytest.mark.engine
def test_direct_reads_agree_with_the_sdk(
    engine: Engine, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    """Other test runs add and remove images meanwhile: the tags the SDK lists the same
    before and after the direct read must be in it, with the same ids."""

    def sdk_tags() -> set[tuple[str, str]]:
        return {
            (tag, entry["Id"])
            for entry in docker_client.api.images()
            for tag in entry.get("RepoTags") or ()
            if tag != "<none>:<none>"
        }

    assert engine_module._api_get("/_ping") == "OK"
    before = sdk_tags()
    listed = engine.local_images()
    stable = before & sdk_tags()
    assert (f"{busybox_image}:latest", listed[busybox_image].id) in stable
    for tag, image_id in stable:
        assert listed[tag].id == image_id


def test_buildx_command_keeps_build_arg_values_off_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "buildx_plugin", lambda: "/plugins/docker-buildx")
    monkeypatch.delenv("BUILDX_GIT_INFO", raising=False)
    request = BuildRequest(
        tags=("app",),
        dockerfile=Path("/src/app/build/app.dockerfile"),
        context=Path("/src/app"),
        labels={"org.paitasks.fingerprint": "sha256:abc"},
        build_args={"TOKEN": "value-1", "HTTP_PROXY": "http://proxy:3128", "PATH": "/opt"},
        platform="linux/amd64",
        network="host",
    )
    command, environment = buildx_command(request)
    assert command[:2] == ["/plugins/docker-buildx", "build"] and command[-1] == "/src/app"
    for flag, value in [
        ("--file", "/src/app/build/app.dockerfile"),
        ("--tag", "app"),
        ("--network", "host"),
        ("--platform", "linux/amd64"),
        ("--label", "org.paitasks.fingerprint=sha256:abc"),
    ]:
        assert command[command.index(flag) + 1] == value
    assert "value-1" not in " ".join(command) and "--load" in command
    assert environment == {"TOKEN": "value-1", "BUILDX_GIT_INFO": "false"}
    # Names the CLI reads itself keep the CLI's own values: those go as KEY=VALUE.
    assert "HTTP_PROXY=http://proxy:3128" in command and "PATH=/opt" in command
    assert "--network" not in buildx_command(dataclasses.replace(request, network=None))[0]


def test_buildx_command_keeps_the_users_git_info_setting_and_falls_back_to_docker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user's own BUILDX_GIT_INFO stands; without a plugin file to run (one only the
    docker CLI can find), the build goes through `docker buildx`."""
    monkeypatch.setattr(engine_module, "buildx_plugin", lambda: None)
    monkeypatch.setenv("BUILDX_GIT_INFO", "true")
    request = BuildRequest(("app",), Path("/src/app/app.dockerfile"), Path("/src/app"))
    command, environment = buildx_command(request)
    assert command[:3] == ["docker", "buildx", "build"] and environment == {}


def _plugin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "docker-buildx"
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_buildx_plugin_is_found_where_the_docker_cli_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Order: the config folder's cli-plugins, its config.json's cliPluginsExtraDirs,
    the system folders; a file that is not executable is no plugin."""
    config, extra, system = tmp_path / "config", tmp_path / "extra", tmp_path / "system"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setattr(engine_module, "PLUGIN_FOLDERS", (str(system),))
    assert engine_module.buildx_plugin() is None and engine_module.build_tool(None) == "classic"
    in_system = _plugin(system)
    assert engine_module.buildx_plugin() == str(in_system)
    in_extra = _plugin(extra)
    config.mkdir()
    (config / "config.json").write_text(f'{{"cliPluginsExtraDirs": ["{extra}"]}}')
    assert engine_module.buildx_plugin() == str(in_extra)
    own = _plugin(config / "cli-plugins")
    assert engine_module.buildx_plugin() == str(own) and engine_module.build_tool(None) == "buildx"
    own.chmod(0o644)
    assert engine_module.buildx_plugin() == str(in_extra)
    (config / "config.json").write_text("[not, json")
    assert engine_module.buildx_plugin() == str(in_system)
    # A string where the CLI wants a list names no folder (not one per character).
    monkeypatch.chdir(tmp_path)
    _plugin(tmp_path / "x")
    (config / "config.json").write_text('{"cliPluginsExtraDirs": "x"}')
    assert engine_module.buildx_plugin() == str(in_system)


@pytest.mark.engine
def test_buildx_gets_build_arg_values_through_its_environment(
    prefix: str, cleanup: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value reaches the image; the plugin's command line (logged by a plugin in
    the docker config folder that runs the real one) never holds it. The build runs
    the plugin itself, not the docker CLI."""
    calls = tmp_path / "plugin-calls"
    real = engine_module.buildx_plugin()
    assert real is not None
    config = tmp_path / "docker-config"
    wrapper = _plugin(config / "cli-plugins")
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    dockerfile = busybox_context(tmp_path / "context")
    dockerfile.write_text(
        dockerfile.read_text() + 'ARG TOKEN\nRUN echo "$TOKEN" > /token\n', encoding="utf-8"
    )
    Engine().build(BuildRequest(
        (f"{prefix}-args",), dockerfile, dockerfile.parent, build_args={"TOKEN": "tok-3f9a"}
    ))
    assert run_on_engine1(f"{prefix}-args", "cat", "/token") == "tok-3f9a"
    logged = calls.read_text()
    assert logged.startswith("build ") and "--build-arg TOKEN" in logged
    assert "tok-3f9a" not in logged


def test_run_cli_streams_lines_and_names_a_missing_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    monkeypatch.setenv("PAITASKS_TEST_KEPT", "kept")
    script = 'echo out; echo err >&2; echo "$PAITASKS_TEST_KEPT $ADDED"; exit 3'
    code = run_cli(["sh", "-c", script], lines.append, {"ADDED": "added"})
    assert code == 3 and lines == ["out", "err", "kept added"]
    missing = str(tmp_path / "no-such-docker")
    with pytest.raises(EngineError, match=r"cannot run .*no-such-docker: No such file") as caught:
        run_cli([missing, "buildx", "build"], lines.append)
    assert caught.value.command == [missing, "buildx", "build"]


def test_buildx_command_passes_named_contexts_and_the_registry_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "buildx_plugin", lambda: "/plugins/docker-buildx")
    pinned = "docker-image://127.0.0.1:5000/ns/base@sha256:" + "a" * 64
    request = BuildRequest(
        tags=("app",), dockerfile=Path("/src/app/build/app.dockerfile"),
        context=Path("/src/app"), cache_from=("127.0.0.1:5000/ns/app:v1",),
        inline_cache=True, named_contexts={"base": pinned},
    )
    command, _ = buildx_command(request)
    assert command[command.index("--build-context") + 1] == f"base={pinned}"
    cache = "type=registry,ref=127.0.0.1:5000/ns/app:v1"
    assert command[command.index("--cache-from") + 1] == cache
    assert command[command.index("--cache-to") + 1] == "type=inline"
    # A new image: no cache to read, but the image carries its own for the next build.
    command, _ = buildx_command(dataclasses.replace(request, cache_from=()))
    assert "--cache-from" not in command
    assert command[command.index("--cache-to") + 1] == "type=inline"
    command, _ = buildx_command(dataclasses.replace(request, inline_cache=False))
    assert "--cache-to" not in command


@pytest.mark.parametrize(
    ("version", "named"),
    [("20.10.24+dfsg1", False), ("22.06.0-beta", False), ("23.0.1", True),
     ("26.1.5+dfsg1", True), ("", False), ("dev", False)],
)
def test_named_contexts_from_dockerd_23_on(version: str, named: bool) -> None:
    assert dockerd_takes_named_contexts(version) is named


@pytest.mark.engine
def test_the_engines_here_take_no_named_contexts(engine: Engine) -> None:
    """dockerd 20.10 embeds BuildKit 0.8: bases come by a rewritten dockerfile here."""
    assert engine.takes_named_contexts("buildx") is False
    assert engine.takes_named_contexts("classic") is False


@pytest.mark.parametrize(
    ("output", "hiccup"),
    [
        ('ERROR: failed to solve: failed to do request: Head "http://r:5000/v2/ns/b/manifests/'
         'sha256:ab": read tcp 127.0.0.1:1->127.0.0.1:5000: read: connection reset by peer', True),
        ("ERROR: failed to solve: failed to resolve source metadata for r:5000/ns/b@sha256:ab: "
         "unexpected status code [manifests sha256:ab]: 429 Too Many Requests", True),
        ("ERROR: failed to solve: failed to push r:5000/ns/x:paitasks-1: unexpected status: "
         "503 Service Unavailable", True),
        ("ERROR: failed to solve: rpc error: code = Unknown desc = failed to create LLB "
         "definition: pulling from host r:5000 failed with status code [manifests "
         "sha256:ab]: 503 ", True),
        # the build's own failures are not the registry's
        ("ERROR: failed to solve: process \"/bin/sh -c curl http://x/v2/\" did not complete "
         "successfully: exit code: 1", False),
        ("ERROR: failed to solve: failed to compute cache key: \"/missing\" not found", False),
        ("ERROR: failed to solve: r:5000/ns/b@sha256:ab: unauthorized: authentication "
         "required", False),
    ],
)
def test_a_build_that_failed_on_the_registry_is_told_apart(output: str, hiccup: bool) -> None:
    found = registry_hiccup(f"#1 [internal] load build definition\n{output}\n")
    assert (found is not None) is hiccup
