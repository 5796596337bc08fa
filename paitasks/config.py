"""Registry settings: where `push` sends images, read from `services-configuration.yaml`.

This module reads one YAML file and checks six keys; it never talks to docker. Values are
read with PyYAML's BaseLoader, so every scalar is the string as written (`tag: 14` is
"14", `1.10` is "1.10"); only YAML's null (`~`, `null`, nothing) means "not set".
Everything a user can get wrong is a one-line `ConfigError` naming the file and the key
path (`cluster.docker-registry.tag`), or `file:line:column` for YAML syntax errors.

The password is a secret: no message quotes a value from the file, and PyYAML's
problem text keeps quoted text only when it is one character or one of PyYAML's token
names, since longer quoted text (an alias, anchor or tag name) may come from the
password line.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from paitasks import reference
from paitasks.errors import ConfigError, TreeError

CONFIG_FILE_NAME: Final = "services-configuration.yaml"
PUBLIC: Final = "public"  # the domain value that means Docker Hub

# The key of each RegistrySettings field in the two layouts of the registry section,
# the current one first.
_FIELDS: Final = ("namespace", "domain", "tag", "username", "password", "secret_name")
_SCHEMAS: Final = {
    "docker-registry": ("namespace", "domain", "tag", "username", "password", "secret-name"),
    "docker-registry-info": (
        "docker-namespace",
        "docker-registry-domain",
        "docker-tag",
        "docker-username",
        "docker-password",
        "secret-name",
    ),
}


@dataclass(frozen=True)
class RegistrySettings:
    """Where and as whom images are pushed; `load_settings` makes checked ones."""

    namespace: str
    domain: str  # "public" means Docker Hub: no domain part in names
    tag: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in repr/str/errors
    secret_name: str | None = None
    source: Path | None = None  # the file it came from, for messages

    def repository(self, image: str) -> str:
        """`<domain>/<namespace>/<image>`, or `<namespace>/<image>` on Docker Hub."""
        return self.image_name(image).rpartition(":")[0]

    def image_name(self, image: str) -> str:
        """The full name `image` is tagged and pushed as: `repository(image):<tag>`."""
        if not reference.is_valid_image_name(image):
            raise TreeError(f"image name {image!r} is not a valid docker repository name")
        try:
            return _full_name(self.domain, self.namespace, image, self.tag)
        except reference.ReferenceError as exc:
            where = f" (settings from {self.source})" if self.source else ""
            raise ConfigError(f"cannot name image {image!r}{where}: {exc}") from None

    @property
    def host(self) -> str:
        """The registry host to log in to and to name in messages (`docker.io` for public)."""
        return reference.DEFAULT_DOMAIN if self.domain == PUBLIC else self.domain


def _full_name(domain: str, namespace: str, image: str, tag: str) -> str:
    """`[<domain>/]<namespace>/<image>:<tag>` if docker reads it back as those parts."""
    if domain != PUBLIC:
        if "/" in domain:
            raise reference.ReferenceError("write host[:port] alone, without a scheme or a path")
        if "." not in domain and ":" not in domain and domain != "localhost":
            raise reference.ReferenceError(
                "a registry host needs a '.' or a ':port' (or is 'localhost'), else docker"
                f" reads it as a Docker Hub namespace; write '{PUBLIC}' for Docker Hub"
            )
        port = re.search(r":([0-9]+)$", domain)
        if port and not 0 < int(port[1]) < 65536:
            raise reference.ReferenceError("the port is outside 1-65535")
    repository = f"{namespace}/{image}" if domain == PUBLIC else f"{domain}/{namespace}/{image}"
    ref = reference.parse(f"{repository}:{tag}")
    if (ref.path, ref.tag, ref.digest) != (f"{namespace}/{image}", tag, None):
        raise reference.ReferenceError("docker would split the full name into other parts")
    return f"{repository}:{tag}"


def load_settings(path: Path | str) -> RegistrySettings:
    """Read and check the registry settings of a config folder or file.

    `path` is a folder holding `services-configuration.yaml` (pai_build's `-c`), or the
    YAML file itself under any name. `cluster.docker-registry` (current OpenPAI) wins
    over the older `cluster.docker-registry-info`, which is then ignored entirely (not
    merged: a half-migrated file must not mix two registries); a section with no value
    counts as absent. The rest of the file (a whole cluster's configuration) is ignored.
    """
    path = Path(path).expanduser()
    try:
        file = _config_file(path)
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None
    data = _parse_yaml(raw, file)
    expected = "expected " + " or ".join(f"cluster.{name}" for name in _SCHEMAS)
    if data is None:
        raise ConfigError(f"{file}: file is empty; {expected}")
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: top level must be a mapping, got {_kind(data)}; {expected}")
    cluster = data.get("cluster")
    if cluster is None:
        raise ConfigError(f"{file}: no 'cluster' section; {expected}")
    if not isinstance(cluster, dict):
        raise ConfigError(f"{file}: 'cluster' must be a mapping, got {_kind(cluster)}")
    for name in _SCHEMAS:
        section = cluster.get(name)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{file}: cluster.{name} must be a mapping, got {_kind(section)}")
        return _settings(section, name, file)
    raise ConfigError(f"{file}: {expected}")


def _config_file(path: Path) -> Path:
    """The YAML file `path` designates, or a ConfigError saying why there is none."""
    if path.is_dir():
        file = path / CONFIG_FILE_NAME
        if file.exists():
            return file
        hint = ""
        if (path / "services-configuration.yml").exists():
            hint = " (there is a services-configuration.yml: rename it to .yaml)"
        raise ConfigError(f"{file} not found{hint}")
    if path.exists():
        return path
    kind = "file" if path.suffix.lower() in (".yaml", ".yml") else "folder"
    raise ConfigError(f"config {kind} {path} does not exist")


class _Loader(yaml.BaseLoader):
    """BaseLoader (every scalar a string, as written) that also reads YAML's null as None."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_constructor("tag:yaml.org,2002:null", lambda loader, node: None)


def _parse_yaml(raw: bytes, file: Path) -> Any:
    """The YAML document in `raw`, or a one-line ConfigError that cannot show the password."""
    try:
        return yaml.load(raw, Loader=_Loader)  # strings, lists, dicts and None only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        problem = _QUOTED_RE.sub(_keep_or_hide, exc.problem or exc.context or "invalid YAML")
        raise ConfigError(f"{where}: {problem}") from None
    except yaml.reader.ReaderError as exc:  # not UTF-8/16 text, or a control character
        raise ConfigError(
            f"{file}: not readable as YAML text: {exc.reason} (at position {exc.position})"
        ) from None
    except RecursionError:
        raise ConfigError(f"{file}: invalid YAML: nested too deeply") from None


# Text PyYAML quoted with %r: one character ('q'), a token name ('<block end>'), or the
# user's alias, anchor or tag name, which is hidden.
_QUOTED_RE: Final = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")


def _keep_or_hide(match: re.Match[str]) -> str:
    try:
        text = ast.literal_eval(match[0])
    except (ValueError, SyntaxError):
        return "'...'"
    one_char_or_token = len(text) == 1 or re.fullmatch(r"<[a-z ]+>", text)
    return match[0] if one_char_or_token else "'...'"


def _settings(section: dict[str, Any], name: str, file: Path) -> RegistrySettings:
    """Check the keys of one registry section (never quoting a value) and build settings."""
    where = f"{file}: cluster.{name}"  # then ".<key> ..."
    keys = dict(zip(_FIELDS, _SCHEMAS[name], strict=True))
    other_keys = dict(zip(_FIELDS, *(k for n, k in _SCHEMAS.items() if n != name), strict=True))
    values: dict[str, str | None] = {}
    for attribute, key in keys.items():
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string, got {_kind(value)}")
        values[attribute] = value or None  # "" is not set either

    def required(attribute: str) -> str:
        value, key = values[attribute], keys[attribute]
        if value is not None:
            return value
        state = "is missing" if key not in section else "is empty"
        other = other_keys[attribute]
        hint = f" (found '{other}', a key of the other layout)" if other in section else ""
        raise ConfigError(f"{where}.{key} {state}{hint}")

    domain, namespace, tag = required("domain"), required("namespace"), required("tag")
    username, password = values["username"], values["password"]
    if (username is None) != (password is None):
        given, absent = ("username", "password") if username else ("password", "username")
        raise ConfigError(
            f"{where}.{keys['username']} and cluster.{name}.{keys['password']} go together:"
            f" {keys[given]} is set but {keys[absent]} is missing or empty"
        )
    for attribute, parts, what in (  # each value checked with those before it
        ("domain", (domain, "ns", "t"), "a registry host[:port]"),
        ("namespace", (domain, namespace, "t"), "a repository path"),
        ("tag", (domain, namespace, tag), "a tag"),
    ):
        try:
            _full_name(parts[0], parts[1], "x", parts[2])
        except reference.ReferenceError as exc:
            raise ConfigError(
                f"{where}.{keys[attribute]} is not {what} docker accepts: {exc}"
            ) from None
    return RegistrySettings(
        namespace, domain, tag, username, password, values["secret_name"], source=file
    )


def _kind(value: object) -> str:
    """A user's word for what YAML made of a value (BaseLoader: str, list or dict)."""
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else "a string"
