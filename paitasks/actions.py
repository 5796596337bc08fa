"""The python-actions behind doit's tasks: thin calls into workspace, hooks and engine.

Each takes plain, picklable arguments and returns a JSON-able dict (saved by doit as the
task's values) or a doit TaskFailed whose message names the culprit, so a failure reads
as one clear paragraph instead of a traceback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from paitasks import workspace
from paitasks.config import RegistrySettings, load_settings
from paitasks.engine import Engine
from paitasks.errors import ConfigError, PaiTasksError
from paitasks.hooks import run_hook

_engines: dict[tuple[str | None, str | None], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(builder: str | None, network: str | None) -> Engine:
    """One Engine per process and setting, shared by the worker threads."""
    with _engines_lock:
        key = (builder, network)
        if key not in _engines:
            _engines[key] = Engine(builder=builder, network=network)
        return _engines[key]


def _failed(exc: PaiTasksError) -> TaskFailed:
    return TaskFailed(str(exc))


def copy_deps(root: str, component: str, folder: str, deps: list[tuple[str, str]]) -> Any:
    """Copy each dependency's whole folder into `<component>/dependency/<dep>/`."""
    try:
        workspace.claim_temp_folders(Path(root), Path(folder), component)
        for name, source in deps:
            destination = Path(folder) / "dependency" / name
            workspace.copy_component(Path(source), destination)
            print(f"copied {name} -> {destination}")
    except PaiTasksError as exc:
        return _failed(exc)
    return {"copied": [name for name, _ in deps]}


def hook(root: str, src: str, component: str, folder: str, script: str) -> Any:
    """Run a build-pre.sh or build-post.sh hook; its output becomes the task's output."""
    try:
        workspace.claim_temp_folders(Path(root), Path(folder), component)
        run_hook(
            Path(script),
            component=component,
            folder=Path(folder),
            src=Path(src),
            root=Path(root),
            on_line=_printer(),
        )
    except PaiTasksError as exc:
        return _failed(exc)
    return {"hook": Path(script).name}


def build_image(
    image: str,
    dockerfile: str,
    context: str,
    builder: str | None,
    network: str | None,
    verbose: bool,
) -> Any:
    """Build one image, tagged with its bare name so `FROM <image>` elsewhere finds it."""
    try:
        engine = engine_for(builder, network)
        image_id = engine.build(
            tag=image,
            dockerfile=Path(dockerfile),
            context=Path(context),
            on_line=_printer() if verbose else None,
        )
    except PaiTasksError as exc:
        return _failed(exc)
    print(f"built {image} {image_id}")
    return {"image": image, "id": image_id, "builder": engine.builder}


def push_image(image: str, config: str | None, verbose: bool) -> Any:
    """Tag an image with its registry name and push it; return the name and digest."""
    try:
        settings = registry_settings(config)
        engine = engine_for(None, None)
        auth = None
        if settings.has_login:
            assert settings.username is not None and settings.password is not None
            auth = {"username": settings.username, "password": settings.password}
            _check_login_once(engine, settings.registry, settings.username, settings.password)
        digest = engine.push(
            image,
            settings.repository(image),
            settings.tag,
            auth=auth,
            on_line=_printer() if verbose else None,
        )
    except PaiTasksError as exc:
        return _failed(exc)
    name = settings.image_name(image)
    print(f"pushed {name} {digest}")
    return {"image": image, "name": name, "digest": digest}


_settings_cache: dict[str, RegistrySettings] = {}
_logins: set[tuple[str, str]] = set()


def registry_settings(config: str | None) -> RegistrySettings:
    """The registry settings of `config=` (read once per process)."""
    if config is None:
        raise ConfigError(
            "pushing needs registry settings: pass config=DIR (or set PAI_CONFIG), "
            "the folder with services-configuration.yaml"
        )
    with _engines_lock:
        if config not in _settings_cache:
            _settings_cache[config] = load_settings(config)
        return _settings_cache[config]


def _check_login_once(engine: Engine, registry: str, username: str, password: str) -> None:
    """Fail fast and clearly on refused credentials, once per registry and user."""
    key = (registry, username)
    with _engines_lock:
        if key in _logins:
            return
    engine.check_login(registry, username, password)
    with _engines_lock:
        _logins.add(key)


def clean(root: str, folder: str) -> Any:
    """Remove a component's temp folders, if a run recorded them."""
    base = Path(folder)
    removed = workspace.remove_temp_folders(
        Path(root), only=[base / name for name in workspace.TEMP_FOLDERS]
    )
    for path in removed:
        print(f"removed {path}")
    return {"removed": [str(path) for path in removed]}


def _printer() -> Callable[[str], None]:
    def emit(line: str) -> None:
        print(line, flush=True)

    return emit
