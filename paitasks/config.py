"""Registry settings: where `push` sends images, read from `services-configuration.yaml`.

This module only reads and checks one YAML file; it never talks to docker. Everything a
user can get wrong comes back as a one-line `ConfigError` naming the file and the dotted
key path, so the CLI can print it as it is. The password is a secret: it never appears in
`repr`/`str` of the settings nor in any error message, including YAML syntax errors on the
line that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.reader import ReaderError

from paitasks.errors import ConfigError, TreeError

CONFIG_FILE_NAME: Final = "services-configuration.yaml"
PUBLIC: Final = "public"  # the domain value that means Docker Hub
DOCKER_HUB: Final = "docker.io"

# Docker's reference grammar (distribution/reference), ASCII only.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE: Final = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE: Final = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE: Final = re.compile(
    rf"(?P<host>{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::(?P<port>[0-9]+))?"
)
_NAME_MAX: Final = 255  # docker's limit on "<domain>/<path>"


@dataclass(frozen=True)
class RegistrySettings:
    """Where and as whom images are pushed.

    Constructing one validates domain, namespace and tag (so `image_name` can never build
    a name docker would refuse or misread); `load_settings` is the usual way to get one,
    with messages that name the key path in the file.
    """

    namespace: str
    domain: str  # "public" means Docker Hub: no domain part in names
    tag: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in repr/str/errors
    secret_name: str | None = None
    source: Path | None = None  # the file it came from, for messages

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source is not None else ""
        for name, value, problem in (
            ("domain", self.domain, _domain_problem),
            ("namespace", self.namespace, _namespace_problem),
            ("tag", self.tag, _tag_problem),
        ):
            found = problem(value) if isinstance(value, str) else "must be a string"
            if found:
                raise ConfigError(f"{where}registry {name} {value!r} {found}")

    def repository(self, image: str) -> str:
        """`<domain>/<namespace>/<image>`, or `<namespace>/<image>` on Docker Hub."""
        if not _PATH_RE.fullmatch(image):
            raise TreeError(
                f"image name {image!r} is not a valid docker repository name "
                "(lowercase letters, digits and single '.', '_' or '-' between them)"
            )
        prefix = "" if self.domain == PUBLIC else f"{self.domain}/"
        name = f"{prefix}{self.namespace}/{image}"
        if len(name) > _NAME_MAX:
            where = f" (settings from {self.source})" if self.source is not None else ""
            raise ConfigError(
                f"image name {name!r} is longer than docker's {_NAME_MAX} characters{where}"
            )
        return name

    def image_name(self, image: str) -> str:
        """The full name `image` is tagged and pushed as: `repository(image):<tag>`."""
        return f"{self.repository(image)}:{self.tag}"

    @property
    def registry(self) -> str:
        """The registry host to log in to and to name in messages (`docker.io` for public)."""
        return DOCKER_HUB if self.domain == PUBLIC else self.domain

    @property
    def has_login(self) -> bool:
        """True when there is something to `docker login` with: both username and password."""
        return bool(self.username) and bool(self.password)

    def __str__(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class _Schema:
    """The key names of one of the two layouts of the registry section."""

    section: str
    namespace: str
    domain: str
    tag: str
    username: str
    password: str
    secret_name: str


_NEW: Final = _Schema(
    "docker-registry", "namespace", "domain", "tag", "username", "password", "secret-name"
)
_OLD: Final = _Schema(
    "docker-registry-info",
    "docker-namespace",
    "docker-registry-domain",
    "docker-tag",
    "docker-username",
    "docker-password",
    "secret-name",
)


def load_settings(path: Path | str) -> RegistrySettings:
    """Read and validate the registry settings of a config folder or file.

    `path` is a folder holding `services-configuration.yaml` (pai_build's `-c`), or the
    YAML file itself under any name. The file may use `cluster.docker-registry` (current
    OpenPAI) or the older `cluster.docker-registry-info`. When both are present the
    current one is used and the older one is ignored entirely (not merged key by key: a
    half-migrated file must not mix two registries); a `docker-registry:` left with no
    value counts as absent. Other keys of the file are ignored: it is shared with the
    rest of a cluster's configuration.
    """
    file = _config_file(Path(path).expanduser())
    raw = _read_bytes(file)
    data = _parse_yaml(raw, file)
    if data is None:
        raise ConfigError(f"{file}: file is empty; {_expected()}")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: top level must be a mapping, got {_kind(data)}; {_expected()}")
    cluster = data.get("cluster")
    if cluster is None:
        raise ConfigError(f"{file}: no 'cluster' section; {_expected()}")
    if not isinstance(cluster, Mapping):
        raise ConfigError(f"{file}: 'cluster' must be a mapping, got {_kind(cluster)}")
    for schema in (_NEW, _OLD):
        section = cluster.get(schema.section)
        if section is None:  # absent, or present with every key commented out
            continue
        if not isinstance(section, Mapping):
            raise ConfigError(
                f"{file}: cluster.{schema.section} must be a mapping, got {_kind(section)}"
            )
        return _settings_from(section, schema, file, _password_guesses(raw))
    raise ConfigError(f"{file}: {_expected()}")


def _expected() -> str:
    return f"expected cluster.{_NEW.section} or cluster.{_OLD.section}"


def _config_file(path: Path) -> Path:
    """The YAML file `path` designates, or a ConfigError saying why there is none."""
    try:
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
    except (OSError, ValueError) as exc:  # permission denied on stat, NUL in the name
        raise ConfigError(f"cannot access {path}: {_os_reason(exc)}") from None
    kind = "file" if path.suffix.lower() in (".yaml", ".yml") else "folder"
    raise ConfigError(f"config {kind} {path} does not exist")


def _os_reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


class _Text(str):
    """Scalar text that YAML would turn into a number or date, kept exactly as written.

    Keeping the text lets an int tag like `14` be used as written, and lets messages say
    what the user wrote (`1.10`) instead of what YAML made of it (`1.1`).
    """

    kind: str

    def __new__(cls, text: str, kind: str) -> _Text:
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj


class _Loader(yaml.SafeLoader):
    """SafeLoader (pure Python, for stable messages) that keeps numbers and dates as text."""


def _keep_as(kind: str) -> Callable[[yaml.SafeLoader, yaml.Node], _Text]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> _Text:
        if not isinstance(node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "expected a scalar value", node.start_mark
            )
        return _Text(str(loader.construct_scalar(node)), kind)

    return construct


for _tag, _what in (("int", "an integer"), ("float", "a float"), ("timestamp", "a date")):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _keep_as(_what))
del _tag, _what


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {_os_reason(exc)}") from None


def _parse_yaml(raw: bytes, file: Path) -> Any:
    """Parse the text of `file`; every failure is a ConfigError that cannot quote the password."""
    try:
        return yaml.load(raw, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_message(file, exc, _password_guesses(raw))) from None
    except ReaderError as exc:
        raise ConfigError(
            f"{file}: not readable as YAML text: {exc.reason} (at character {exc.position})"
        ) from None
    except yaml.YAMLError as exc:  # any other kind PyYAML may grow
        raise ConfigError(f"{file}: invalid YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise ConfigError(f"{file}: invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A constructor refused a value (e.g. `!!int abc`); its text may quote the value.
        raise ConfigError(
            f"{file}: invalid YAML value: {_scrub(str(exc), _password_guesses(raw))}"
        ) from None


def _yaml_message(file: Path, exc: yaml.MarkedYAMLError, secrets: list[str]) -> str:
    """`<file>: invalid YAML at line L, column C: <problem>`, 1-based, never a snippet.

    PyYAML's own str() quotes the offending line, which may be the password line, so only
    the marks and the short problem/context texts are used, and those are scrubbed too.
    """
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = _scrub(exc.problem or exc.context or "cannot parse", secrets)
    message = f"{file}: invalid YAML{where}: {problem}"
    cmark = exc.context_mark
    if exc.problem and exc.context and cmark is not None and cmark is not mark:
        message += (
            f" ({_scrub(exc.context, secrets)} started at line {cmark.line + 1},"
            f" column {cmark.column + 1})"
        )
    return message


# A Python repr of a string, as PyYAML puts user text into its messages with %r.
_QUOTED_RE: Final = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_TOKEN_RE: Final = re.compile(r"'<[a-z ]+>'")  # a token id such as '<block end>'
_SINGLE_CHAR_RE: Final = re.compile(
    r"""'(?:[^'\\]|\\[\\'"abfnrtv0]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\U[0-9a-f]{8})'"""
    r"""|"(?:[^"\\]|\\[\\'"abfnrtv0]|\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\U[0-9a-f]{8})\""""
)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """Hide user text quoted in a PyYAML/constructor message, then any known secret.

    Quoted single characters and token ids are what most messages quote and are kept;
    longer quoted text (tag, alias or anchor names, rejected values) is replaced by
    '...', since it may come from the password line.
    """

    def keep_or_hide(match: re.Match[str]) -> str:
        quoted = match.group(0)
        if _SINGLE_CHAR_RE.fullmatch(quoted) or _TOKEN_RE.fullmatch(quoted):
            return quoted
        return "'...'"

    text = _QUOTED_RE.sub(keep_or_hide, text)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


_PASSWORD_LINE_RE: Final = re.compile(
    r"""^[\s-]*["']?(?:docker-)?password["']?\s*:[ \t]*(?P<value>.*?)\s*$""", re.MULTILINE
)


def _password_guesses(raw: bytes) -> list[str]:
    """What could be the password in a file YAML cannot parse: each `password:` value.

    A last line of defence behind `_scrub`'s hiding of quoted text: the exact password is
    unknown when the YAML is broken, so every plausible form of each value is hidden.
    """
    text = raw.decode("utf-8", errors="replace")
    guesses: set[str] = set()
    for match in _PASSWORD_LINE_RE.finditer(text):
        value = match.group("value")
        for candidate in (value, value.strip("\"'"), value.split(" #")[0].strip().strip("\"'")):
            if len(candidate) >= 3:
                guesses.add(candidate)
    return sorted(guesses)


def _settings_from(
    section: Mapping[Any, Any], schema: _Schema, file: Path, guesses: list[str]
) -> RegistrySettings:
    """Check each key of one registry section and build the settings from it.

    Values are quoted in messages, so the password (and, should YAML have folded it into
    another value, anything written after a `password:` key) is hidden from them.
    """
    prefix = f"cluster.{schema.section}"
    password = _optional(section, schema.password, prefix, file, secret=True)
    hide = sorted({password, *guesses} if password else set(guesses), key=len, reverse=True)

    def required(key: str, problem: Callable[[str], str | None]) -> str:
        value = _optional(section, key, prefix, file, secret=False, hide=hide)
        if value is None:
            state = "is missing" if key not in section else "is empty"
            hint = _other_schema_hint(section, key, schema)
            raise ConfigError(f"{file}: {prefix}.{key} {state}{hint}")
        found = problem(value)
        if found:
            raise ConfigError(f"{file}: {prefix}.{key} {_shown(value, hide)} {found}")
        return value

    domain = required(schema.domain, _domain_problem)
    namespace = required(schema.namespace, _namespace_problem)
    tag = required(schema.tag, _tag_problem)
    username = _optional(section, schema.username, prefix, file, secret=False, hide=hide)
    secret_name = _optional(section, schema.secret_name, prefix, file, secret=False, hide=hide)
    if (username is None) != (password is None):
        given, absent = (
            (schema.username, schema.password) if username else (schema.password, schema.username)
        )
        raise ConfigError(
            f"{file}: {prefix}.{schema.username} and {prefix}.{schema.password} go together:"
            f" {given} is set but {absent} is missing or empty"
        )
    return RegistrySettings(
        namespace=namespace,
        domain=domain,
        tag=tag,
        username=username,
        password=password,
        secret_name=secret_name,
        source=file,
    )


def _other_schema_hint(section: Mapping[Any, Any], key: str, schema: _Schema) -> str:
    """Point at the likely mistake of writing one schema's key names in the other's section."""
    other = _OLD if schema is _NEW else _NEW
    index = [schema.namespace, schema.domain, schema.tag].index(key)
    other_key = [other.namespace, other.domain, other.tag][index]
    if other_key in section:
        return f" (found '{other_key}', a key of cluster.{other.section}; use '{key}' here)"
    return ""


def _optional(
    section: Mapping[Any, Any],
    key: str,
    prefix: str,
    file: Path,
    *,
    secret: bool,
    hide: Iterable[str] = (),
) -> str | None:
    """The string value of `key`, None when absent or empty; wrong types are errors.

    Integers are accepted when written in plain decimal, since every YAML reader then
    agrees on their text (`tag: 14`). Floats (`1.10` reads as 1.1), other integer forms
    (`0123` is octal in YAML 1.1), dates and booleans would be read differently by other
    tools sharing this file, so they must be quoted.
    """
    value = section.get(key)
    path = f"{prefix}.{key}"
    if value is None or value == "":
        return None
    if isinstance(value, _Text):
        canonical_int = value.kind == "an integer" and re.fullmatch(r"-?(?:0|[1-9][0-9]*)", value)
        if canonical_int:
            return str(value)
        shown = "" if secret else f" {_shown(value, hide)}"
        return _raise(
            f"{file}: {path}{shown} is read by YAML as {value.kind}, which changes how it"
            f" is written; put it in quotes"
        )
    if isinstance(value, bool):
        return _raise(
            f"{file}: {path} is read by YAML as a boolean (true/false/yes/no/on/off);"
            " put it in quotes"
        )
    if not isinstance(value, str):
        return _raise(f"{file}: {path} must be a string, got {_kind(value)}")
    return value


def _raise(message: str) -> str:
    raise ConfigError(message)


def _shown(value: str, hide: Iterable[str]) -> str:
    """`value` quoted for a message, shortened, with the password hidden should it be inside."""
    text = value if len(value) <= 80 else value[:77] + "..."
    for secret in hide:
        text = text.replace(secret, "***")
    return repr(text)


def _kind(value: object) -> str:
    """A user's word for the YAML type of `value`."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, set | frozenset):
        return "a set"
    return f"a {type(value).__name__}"


def _domain_problem(domain: str) -> str | None:
    """Why `domain` is not a registry host[:port] docker would recognise, or None."""
    if domain == PUBLIC:
        return None
    if "://" in domain:
        return "must be a registry host[:port] without a scheme, e.g. 'registry.example.com'"
    match = _DOMAIN_RE.fullmatch(domain)
    if not match:
        return (
            "is not a registry host[:port] (e.g. 'docker.io', '127.0.0.1:5000');"
            f" use '{PUBLIC}' for Docker Hub"
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return "has a port outside 1-65535"
    if "." not in domain and ":" not in domain and domain != "localhost":
        # Docker reads a first name part without '.' or ':' as a Docker Hub namespace.
        return (
            "needs a '.' or a ':port', or must be 'localhost': docker would take it for a"
            f" Docker Hub namespace; use '{PUBLIC}' for Docker Hub"
        )
    return None


def _namespace_problem(namespace: str) -> str | None:
    """Why `namespace` is not a docker repository path, or None."""
    if _PATH_RE.fullmatch(namespace):
        return None
    return (
        "is not a docker repository path: lowercase letters and digits, separated by"
        " single '.', '_', '__' or '-', in parts joined by '/'"
    )


def _tag_problem(tag: str) -> str | None:
    """Why `tag` is not a docker tag, or None."""
    if _TAG_RE.fullmatch(tag):
        return None
    return (
        "is not a docker tag: up to 128 letters, digits, '_', '.' or '-', not starting"
        " with '.' or '-'"
    )
