"""Read what a dockerfile needs from other images: FROM, COPY --from, RUN --mount from=.

Parsing is BuildKit's own (PyPI `dockerfile`); this module adds what the graph needs on
top: ARG substitution in FROM, stage names, and the normal form of an image reference.

The rules follow BuildKit's dockerfile frontend, so that a file this module accepts is one
`docker build` would accept as far as image references go, and the references found are
the ones docker would pull or look up:

* FROM names an earlier `AS` stage only when the expanded name equals it exactly (stage
  names are stored lower-cased, so `FROM Builder` is an image name, and an invalid one).
* COPY --from and RUN --mount from= look stage names up case-insensitively, among all
  stages; COPY --from also takes a stage index. Neither expands ARGs: BuildKit refuses
  `$` there ("define a new stage with FROM using ARG from global scope").
* `scratch` is never an image. The platform ARGs (TARGETARCH, ...) are predefined in the
  global scope, with this machine's values unless build args say otherwise.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, NoReturn

import dockerfile

from paitasks.errors import DockerfileError

__all__ = [
    "DockerfileInfo",
    "ImageRef",
    "RefKind",
    "is_valid_image_name",
    "local_image_name",
    "parse_dockerfile",
    "parse_dockerfile_text",
]

RefKind = Literal["FROM", "COPY --from", "RUN --mount"]
_REMOTE_SOURCE_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)


@dataclass(frozen=True)
class ImageRef:
    """One reference from a dockerfile to an image that is not one of its own stages."""

    reference: str  # as resolved (ARGs substituted), e.g. "docker.io/library/base:latest"
    line: int  # 1-based line of the instruction
    kind: RefKind


@dataclass(frozen=True)
class DockerfileInfo:
    """What the dependency graph needs to know about one dockerfile."""

    path: Path
    refs: tuple[ImageRef, ...]  # external image references, in file order
    stages: tuple[str, ...]  # `AS` names, lower-cased, in order
    # Context paths the build reads (COPY/ADD sources, RUN --mount type=bind sources),
    # glob patterns relative to the context root; None when it may read all of it.
    context: tuple[str, ...] | None = None
    # Its ONBUILD triggers read the context of images built FROM it.
    onbuild_reads_context: bool = False
    # Every ARG it declares (before FROM or in a stage): the build args it can see.
    args: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------
# Image references (the grammar of github.com/distribution/reference)
# --------------------------------------------------------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_IMAGE_NAME_RE = re.compile(_PATH_COMPONENT, re.ASCII)
_HEX64_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_MAX = 255  # docker's limit on domain + path
_IMAGE_NAME_MAX = 128  # our own limit on a tree image name (one path component)
_REFERENCE_MAX = 1024  # longer than any valid reference; keeps the regex cheap
_DEFAULT_DOMAIN = "docker.io"
_OFFICIAL_PREFIX = "library/"


class _Reference(NamedTuple):
    """A reference in docker's normal form: `docker.io/library/x` rather than `x`."""

    domain: str
    path: str
    tag: str | None
    digest: str | None


class _ReferenceError(Exception):
    """A string docker would refuse as an image reference; the message says why."""


def _split_domain(name: str) -> tuple[str, str]:
    """Split off the registry the way docker does: `x/y` is Docker Hub, `x.io/y` is not."""
    first, slash, rest = name.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = _DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = _DEFAULT_DOMAIN
    if domain == _DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder


def _parse_reference(text: str) -> _Reference:
    """Validate and normalize `text` as `docker pull` would, or raise _ReferenceError."""
    if not text:
        raise _ReferenceError("repository name must have at least one component")
    if len(text) > _REFERENCE_MAX:
        raise _ReferenceError("reference is too long")
    if _HEX64_RE.fullmatch(text):
        raise _ReferenceError("cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    remote_name = remainder.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise _ReferenceError("repository name must be lowercase")
    match = _REFERENCE_RE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise _ReferenceError("invalid reference format")
    name = match.group("name")
    if len(name) > _NAME_MAX:
        raise _ReferenceError(f"repository name must not be more than {_NAME_MAX} characters")
    digest = match.group("digest")
    if digest is not None:
        algorithm, _, encoded = digest.partition(":")
        if algorithm not in _DIGEST_HEX_LENGTHS:
            raise _ReferenceError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != _DIGEST_HEX_LENGTHS[algorithm]:
            raise _ReferenceError("invalid checksum digest length")
        if encoded.lower() != encoded:
            raise _ReferenceError("invalid checksum digest format")
    return _Reference(domain, name[len(domain) + 1 :], match.group("tag"), digest)


def is_valid_image_name(name: str) -> bool:
    """Whether docker takes `name` as a bare repository name (one lower-case component).

    Tree image names come from file names, so this rejects what `docker build -t` would.
    """
    return (
        len(name) <= _IMAGE_NAME_MAX
        and _IMAGE_NAME_RE.fullmatch(name) is not None
        and _HEX64_RE.fullmatch(name) is None
    )


def local_image_name(reference: str) -> str | None:
    """The bare local name a reference can resolve to, or None if it names a remote image.

    Docker looks `base`, `base:latest`, `library/base` and `docker.io/library/base` all up
    as `docker.io/library/base:latest`; the tree only builds such `:latest` names.
    """
    try:
        ref = _parse_reference(reference)
    except _ReferenceError:
        return None
    if ref.domain != _DEFAULT_DOMAIN or ref.digest is not None:
        return None
    if ref.tag not in (None, "latest") or not ref.path.startswith(_OFFICIAL_PREFIX):
        return None
    name = ref.path[len(_OFFICIAL_PREFIX) :]
    return name if "/" not in name and is_valid_image_name(name) else None


# --------------------------------------------------------------------------------------
# Word expansion (BuildKit's shell lexer: quotes, escapes, $VAR, ${VAR...})
# --------------------------------------------------------------------------------------


class _ExpandError(Exception):
    """A word cannot be expanded; the caller adds file and line."""


_SPECIAL_PARAMS = frozenset("@*#?-$!0")


def _pattern_regex(pattern: str, greedy: bool) -> re.Pattern[str]:
    """Turn a `${VAR#pattern}` shell pattern (`*`, `?`, `\\` escapes) into a regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*" if greedy else ".*?")
        elif char == "?":
            out.append(".")
        elif char == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue  # escaped only to get past the ${...} syntax
            if following not in ("*", "?", "\\"):
                raise _ExpandError(f"invalid pattern ({pattern}) in substitution")
            out.append(re.escape(following))
            i += 1
        else:
            out.append(re.escape(char))
    return re.compile("".join(out))


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep `\\x` escapes in order, for shortest-suffix matching."""
    units: list[str] = []
    i = 0
    while i < len(pattern):
        step = 2 if pattern[i] == "\\" and i + 1 < len(pattern) else 1
        units.append(pattern[i : i + step])
        i += step
    return "".join(reversed(units))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy).match(value)
    return value[match.end() :] if match else value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


class _Word:
    """One word run through BuildKit's expansion rules against a set of ARG values."""

    def __init__(self, word: str, env: Mapping[str, str], escape: str) -> None:
        self._text = word
        self._pos = 0
        self._env = env
        self._escape = escape
        self._raw_escapes = False
        self.names: list[str] = []  # every variable looked up, for error messages

    def expand(self) -> str:
        return self._until(None, raw_escapes=False)

    def _peek(self) -> str | None:
        return self._text[self._pos] if self._pos < len(self._text) else None

    def _next(self) -> str | None:
        char = self._peek()
        if char is not None:
            self._pos += 1
        return char

    def _lookup(self, name: str) -> tuple[str, bool]:
        self.names.append(name)
        if name in self._env:
            return self._env[name], True
        return "", False

    def _until(self, stop: str | None, raw_escapes: bool) -> str:
        saved, self._raw_escapes = self._raw_escapes, raw_escapes
        try:
            out: list[str] = []
            while (char := self._peek()) is not None:
                if char == stop:
                    self._next()
                    return "".join(out)
                if char == "$":
                    out.append(self._dollar())
                elif char == "'":
                    out.append(self._single_quoted())
                elif char == '"':
                    out.append(self._double_quoted())
                else:
                    self._next()
                    if char == self._escape:
                        if self._raw_escapes:
                            out.append(char)
                        escaped = self._next()
                        if escaped is None:
                            break
                        char = escaped
                    out.append(char)
            if stop is not None:
                raise _ExpandError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(out)
        finally:
            self._raw_escapes = saved

    def _single_quoted(self) -> str:
        self._next()
        out: list[str] = []
        while (char := self._next()) != "'":
            if char is None:
                raise _ExpandError("unexpected end of statement: missing single quote")
            out.append(char)
        return "".join(out)

    def _double_quoted(self) -> str:
        self._next()
        out: list[str] = []
        while True:
            char = self._peek()
            if char is None:
                raise _ExpandError("unexpected end of statement: missing double quote")
            if char == '"':
                self._next()
                return "".join(out)
            if char == "$":
                out.append(self._dollar())
                continue
            self._next()
            if char == self._escape:
                if self._raw_escapes:
                    out.append(char)
                following = self._peek()
                if following is None:
                    continue
                if following in ('"', "$", self._escape):
                    char = following
                    self._next()
            out.append(char)

    def _name(self) -> str:
        first = self._peek()
        if first is None:
            return ""
        if first.isdecimal():
            digits: list[str] = []
            while (char := self._peek()) is not None and char.isdecimal():
                digits.append(char)
                self._next()
            return "".join(digits)
        if first in _SPECIAL_PARAMS:
            self._next()
            return first
        name: list[str] = []
        while (char := self._peek()) is not None and (
            char.isalpha() or char.isdecimal() or char == "_"
        ):
            name.append(char)
            self._next()
        return "".join(name)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            return self._lookup(name)[0] if name else "$"
        self._next()
        first = self._peek()
        if first is None:
            raise _ExpandError("syntax error: missing '}'")
        if first in ("{", "}", ":"):
            raise _ExpandError("syntax error: bad substitution")
        name = self._name()
        modifier = self._next()
        if modifier is None:
            raise _ExpandError("syntax error: missing '}'")
        shown = modifier
        if modifier == "}":
            return self._lookup(name)[0]
        if modifier == "/":
            return self._replace(name)
        null_is_unset = modifier == ":"
        if null_is_unset:
            modifier = self._next()
            shown += modifier or ""
        elif modifier not in ("+", "-", "?", "#", "%"):
            raise _ExpandError(f"unsupported modifier ({shown}) in substitution")
        word = self._word_until_brace(raw_escapes=modifier in ("#", "%"))
        value, is_set = self._lookup(name)
        empty = not is_set or (null_is_unset and value == "")
        if modifier == "-":
            return word if empty else value
        if modifier == "+":
            return "" if empty else word
        if modifier == "?":
            if empty:
                reason = "is not allowed to be " + ("unset" if not is_set else "empty")
                raise _ExpandError(f"{name}: {word or reason}")
            return value
        if modifier in ("#", "%"):
            greedy = word.startswith(modifier)
            pattern = word[1:] if greedy else word
            trim = _trim_suffix if modifier == "%" else _trim_prefix
            return trim(pattern, value, greedy)
        raise _ExpandError(f"unsupported modifier ({shown}) in substitution")

    def _word_until_brace(self, raw_escapes: bool) -> str:
        try:
            return self._until("}", raw_escapes)
        except _ExpandError:
            if self._peek() is None:
                raise _ExpandError("syntax error: missing '}'") from None
            raise

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self._next()
        try:
            pattern = self._until("/", raw_escapes=True)
        except _ExpandError:
            if self._peek() is None:
                raise _ExpandError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._word_until_brace(raw_escapes=True)
        value, _ = self._lookup(name)
        regex = _pattern_regex(pattern, greedy=True)
        if replace_all:
            return regex.sub(lambda _match: replacement, value)
        match = regex.search(value)
        if match is None:
            return value
        return value[: match.start()] + replacement + value[match.end() :]


# --------------------------------------------------------------------------------------
# The dockerfile walk
# --------------------------------------------------------------------------------------

_INSTRUCTIONS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
_STAGE_NAME_RE = re.compile(r"[a-z][a-z0-9\-_.]*", re.ASCII)
_DIRECTIVE_RE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*", re.ASCII)
_ONBUILD_PREFIX_RE = re.compile(r"\s*ONBUILD\s*", re.IGNORECASE)
_STAGE_INDEX_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_MOUNT_VARIABLE_RE = re.compile(r"\$.", re.DOTALL)
# Go's unicode.IsSpace, which BuildKit uses to trim lines; Python's isspace() differs.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
_GO_SPACE += "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_SCRATCH = "scratch"

_MACHINE_PLATFORMS = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def _platform_args() -> dict[str, str]:
    """BuildKit's predefined global ARGs, for a build on (and for) this machine."""
    machine = platform.machine().lower()
    arch, variant = _MACHINE_PLATFORMS.get(machine, (machine, ""))
    spec = f"linux/{arch}" + (f"/{variant}" if variant else "")
    args: dict[str, str] = {}
    for side in ("BUILD", "TARGET"):
        args |= {
            f"{side}PLATFORM": spec,
            f"{side}OS": "linux",
            f"{side}OSVERSION": "",
            f"{side}ARCH": arch,
            f"{side}VARIANT": variant,
        }
    return args


def _escape_token(text: str) -> str:
    """The `# escape=` parser directive's character, which word expansion needs too."""
    escape = "\\"
    for number, line in enumerate(text.split("\n")):
        line = line.removesuffix("\r")
        if number == 0:
            line = line.removeprefix("\ufeff")
        match = _DIRECTIVE_RE.fullmatch(line.lstrip(_GO_SPACE))
        if match is None:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
    return escape


def _split_flag(flag: str) -> tuple[str, str | None]:
    """`--name=value` as (name, value); value None when there is no `=`."""
    body = flag[2:] if flag.startswith("--") else flag
    name, equals, value = body.partition("=")
    return name, (value if equals else None)


def _csv_fields(text: str) -> list[str]:
    """One record of Go's encoding/csv, which BuildKit uses for `--mount` options."""
    fields: list[str] = []
    i = 0
    while True:
        if i < len(text) and text[i] == '"':
            i += 1
            value: list[str] = []
            while True:
                end = text.find('"', i)
                if end < 0:
                    raise ValueError('extraneous or missing " in quoted-field')
                value.append(text[i:end])
                i = end + 1
                if text.startswith('"', i):
                    value.append('"')
                    i += 1
                    continue
                break
            if i < len(text) and text[i] != ",":
                raise ValueError('extraneous or missing " in quoted-field')
            fields.append("".join(value))
        else:
            end = text.find(",", i)
            end = len(text) if end < 0 else end
            if '"' in text[i:end]:
                raise ValueError('bare " in non-quoted-field')
            fields.append(text[i:end])
            i = end
        if i >= len(text):
            return fields
        i += 1  # the comma


@dataclass
class _Stage:
    """One FROM and the instructions under it."""

    index: int
    line: int
    name: str  # lower-cased `AS` name, "" if none
    base: str  # the FROM word before expansion
    platform: str | None
    commands: list[dockerfile.Command] = field(default_factory=list)
    triggers: list[tuple[int, dockerfile.Command]] = field(default_factory=list)


class _Walk:
    """One pass over a parsed dockerfile, collecting refs; every problem is a DockerfileError."""

    def __init__(self, text: str, path: Path, build_args: Mapping[str, str]) -> None:
        self.path = path
        self.text = text
        self.build_args = build_args
        self.escape = "\\"
        self.stages: list[_Stage] = []
        self.meta_args: list[dockerfile.Command] = []
        self.refs: list[ImageRef] = []
        self.last_index: dict[str, int] = {}  # stage name -> index of its last definition
        self.sources: list[str] | None = []  # context paths read; None: all of it

    def fail(self, line: int | None, message: str) -> NoReturn:
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        raise DockerfileError(f"{where}: {message}")

    # -- reading ----------------------------------------------------------------------

    def parse(self, text: str) -> tuple[dockerfile.Command, ...]:
        """BuildKit's parse of `text`, its errors turned into ours."""
        try:
            commands: tuple[dockerfile.Command, ...] = dockerfile.parse_string(text)
        except dockerfile.GoParseError as exc:
            message = str(exc)
            if message == "file with no instructions":
                self.fail(None, "no instructions (the file is empty or only comments)")
            self.fail(None, f"cannot parse: {message}")
        return commands

    def check_text(self) -> None:
        """Refuse text the Go parser would silently misread or cannot take."""
        try:
            self.text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = self.text.count("\n", 0, exc.start) + 1
            self.fail(line, "text is not valid Unicode (lone surrogate)")
        nul = self.text.find("\0")
        if nul >= 0:
            self.fail(self.text.count("\n", 0, nul) + 1, "contains a NUL character")

    def read(self) -> None:
        """Split instructions into global ARGs and stages, checking their shape."""
        self.check_text()
        self.escape = _escape_token(self.text)
        for command in self.parse(self.text):
            line = command.start_line
            if not command.cmd:  # the library's node for a lone `\` at the end of the file
                self.fail(line, "empty instruction (a line continuation with nothing after it)")
            instruction = command.cmd.upper()
            if instruction not in _INSTRUCTIONS:
                self.fail(line, f"unknown instruction: {command.cmd}")
            if instruction == "FROM":
                self.stages.append(self.read_from(command, len(self.stages)))
            elif not self.stages:
                if instruction != "ARG":
                    self.fail(line, f"{instruction} before the first FROM (only ARG may be)")
                self.meta_args.append(command)
            elif instruction == "ONBUILD":
                self.stages[-1].triggers.append((line, self.read_trigger(command)))
            else:
                self.stages[-1].commands.append(command)
        if not self.stages:
            self.fail(None, "no FROM instruction")
        for stage in self.stages:
            if stage.name:
                self.last_index[stage.name] = stage.index

    def read_from(self, command: dockerfile.Command, index: int) -> _Stage:
        line = command.start_line
        platform_value: str | None = None
        for flag in command.flags:
            if flag == "--":
                break
            name, value = _split_flag(flag)
            if name != "platform":
                self.fail(line, f"FROM has no flag {flag!r} (only --platform)")
            if value is None:
                self.fail(line, "FROM --platform needs a value")
            if platform_value is not None:
                self.fail(line, "FROM --platform given twice")
            platform_value = value
        args = command.value
        stage_name = ""
        if len(args) == 3 and args[1].lower() == "as":
            stage_name = args[2].lower()
            if not _STAGE_NAME_RE.fullmatch(stage_name):
                self.fail(
                    line,
                    f"invalid stage name {args[2]!r}: it must start with a letter and hold"
                    " only letters, digits, '-', '_' and '.'",
                )
        elif len(args) != 1:
            self.fail(line, "FROM takes an image and optionally `AS <name>`")
        return _Stage(index, line, stage_name, args[0], platform_value)

    def read_trigger(self, command: dockerfile.Command) -> dockerfile.Command:
        """Parse an ONBUILD trigger on its own, as BuildKit does when a child stage runs it."""
        line = command.start_line
        inner = (command.sub_cmd or "").upper()
        if not inner:
            self.fail(line, "ONBUILD needs an instruction")
        if inner == "ONBUILD":
            self.fail(line, "ONBUILD ONBUILD is not allowed")
        if inner in ("FROM", "MAINTAINER"):
            self.fail(line, f"{inner} is not allowed as an ONBUILD trigger")
        if inner not in _INSTRUCTIONS:
            self.fail(line, f"unknown instruction in ONBUILD: {command.sub_cmd}")
        expression = _ONBUILD_PREFIX_RE.sub("", command.original or "", count=1)
        try:
            triggers = dockerfile.parse_string(expression)
        except dockerfile.GoParseError as exc:
            self.fail(line, f"cannot parse ONBUILD trigger: {exc}")
        if len(triggers) != 1:
            self.fail(line, "ONBUILD trigger must be a single instruction")
        trigger: dockerfile.Command = triggers[0]
        return trigger

    # -- expansion --------------------------------------------------------------------

    def expand(
        self, word: str, env: Mapping[str, str], line: int, what: str
    ) -> tuple[str, list[str]]:
        """`word` with ARGs substituted, and the names it looked up."""
        expansion = _Word(word, env, self.escape)
        try:
            return expansion.expand(), expansion.names
        except _ExpandError as exc:
            self.fail(line, f"cannot expand {what} {word!r}: {exc}")
        except RecursionError:
            self.fail(line, f"cannot expand {what}: nested too deeply")

    def global_args(self) -> dict[str, str]:
        """The ARG values FROM lines see: predefined ones, then ARGs before the first FROM."""
        env = _platform_args()
        env["TARGETSTAGE"] = self.stages[-1].name
        for key in list(env):
            if key in self.build_args:
                env[key] = self.build_args[key]
        for command in self.meta_args:
            line = command.start_line
            if not command.value:
                self.fail(line, "ARG needs a name")
            for item in command.value:
                key, equals, default = item.partition("=")
                if not key:
                    self.fail(line, f"ARG {item!r} has no name")
                if key in self.build_args:
                    env[key] = self.build_args[key]
                elif equals:
                    env[key] = self.expand(default, env, line, f"ARG {key}")[0]
        return env

    # -- references -------------------------------------------------------------------

    def add_ref(self, reference: str, line: int, kind: RefKind, what: str) -> None:
        try:
            _parse_reference(reference)
        except _ReferenceError as exc:
            self.fail(line, f"{what} {reference!r} is not a valid image reference: {exc}")
        self.refs.append(ImageRef(reference, line, kind))

    def walk(self) -> DockerfileInfo:
        self.read()
        env = self.global_args()
        earlier: dict[str, _Stage] = {}  # FROM looks names up among earlier stages only
        for stage in self.stages:
            self.walk_from(stage, env, earlier)
            for command in stage.commands:
                self.walk_command(command, stage, command.start_line)
            if stage.name:
                earlier[stage.name] = stage
        refs = sorted(dict.fromkeys(self.refs), key=lambda ref: ref.line)
        names = tuple(stage.name for stage in self.stages if stage.name)
        context = None if self.sources is None else tuple(dict.fromkeys(self.sources))
        onbuild = any(
            (trigger.cmd or "").upper() in ("COPY", "ADD")
            and not any(_split_flag(flag)[0] == "from" for flag in trigger.flags)
            for _, trigger in self.stages[-1].triggers
        )
        arg_commands = [
            *self.meta_args,
            *(c for st in self.stages for c in st.commands if (c.cmd or "").upper() == "ARG"),
        ]
        declared = [item.partition("=")[0] for command in arg_commands for item in command.value]
        args = tuple(sorted(dict.fromkeys(name for name in declared if name)))
        return DockerfileInfo(self.path, tuple(refs), names, context, onbuild, args)

    def read_context(self, command: dockerfile.Command) -> None:
        """Note the context paths a COPY or ADD (without --from) reads."""
        if self.sources is None:
            return
        heredocs = {doc.name for doc in command.heredocs}
        for source in command.value[:-1]:
            if source.startswith("<<") and source.lstrip("<-").strip("'\"") in heredocs:
                continue
            if (command.cmd or "").upper() == "ADD" and _REMOTE_SOURCE_RE.match(source):
                continue
            self.add_source(source)

    def add_source(self, source: str) -> None:
        """A context path read; anything unclear (variables, `..`, the root) means all."""
        if self.sources is None:
            return
        path = source.strip().lstrip("/")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if not parts or "$" in path or ".." in parts or "\\" in path:
            self.sources = None
            return
        self.sources.append("/".join(parts))

    def walk_from(self, stage: _Stage, env: Mapping[str, str], earlier: dict[str, _Stage]) -> None:
        line = stage.line
        platform_spec = stage.platform
        if platform_spec is not None and not self.expand(platform_spec, env, line, "--platform")[0]:
            self.fail(line, f"FROM --platform={stage.platform} is empty")
        base, looked_up = self.expand(stage.base, env, line, "FROM")
        if not base:
            names = list(dict.fromkeys(looked_up))
            detail = ", ".join(f"ARG {name} is empty" for name in names)
            self.fail(line, "FROM names no image" + (f" ({detail})" if detail else ""))
        parent = earlier.get(base)
        if parent is not None:
            # A child stage runs its parent stage's ONBUILD triggers.
            for trigger_line, trigger in parent.triggers:
                self.walk_command(trigger, stage, trigger_line)
        elif base.lower() in earlier:
            self.fail(
                line,
                f"FROM {base}: docker only matches a stage when FROM spells its name in lower"
                f" case (FROM {base.lower()}); otherwise it is an image name, and an invalid one",
            )
        elif base != _SCRATCH:
            self.add_ref(base, line, "FROM", "FROM")

    def walk_command(self, command: dockerfile.Command, stage: _Stage, line: int) -> None:
        instruction = (command.cmd or "").upper()
        if instruction == "COPY":
            if not self.walk_copy(command.flags, stage, line):
                self.read_context(command)
        elif instruction == "RUN":
            self.walk_run(command.flags, stage, line)
        elif instruction == "ADD":
            for flag in command.flags:
                if _split_flag(flag)[0] == "from":
                    self.fail(line, "ADD has no --from flag (use COPY --from)")
            self.read_context(command)

    def walk_copy(self, flags: Sequence[str], stage: _Stage, line: int) -> bool:
        """Check a COPY's --from; True when it copies from a stage or an image."""
        source: str | None = None
        for flag in flags:
            if flag == "--":
                break
            name, value = _split_flag(flag)
            if name != "from":
                continue
            if value is None:
                self.fail(line, "COPY --from needs a value (--from=<stage or image>)")
            if source is not None:
                self.fail(line, "COPY --from given twice")
            source = value
        if not source:
            return False
        try:
            literal = _Word(source, {}, self.escape).expand() == source
        except _ExpandError:
            literal = False
        if not literal:
            self.fail(
                line,
                f"COPY --from={source}: docker does not expand variables, quotes or escapes"
                " in --from; name a stage (FROM ${ARG} AS name) instead",
            )
        if _STAGE_INDEX_RE.fullmatch(source):
            index = int(source)
            if not 0 <= index < len(self.stages):
                self.fail(line, f"COPY --from={source}: there is no stage {index}")
            if index >= stage.index:
                self.fail(line, f"COPY --from={source}: stage {index} is not built before it")
            return True
        target = self.last_index.get(source.lower())
        if target is not None:
            if target >= stage.index:
                self.fail(line, f"COPY --from={source}: that stage is not built before it")
            return True
        if source != _SCRATCH:
            self.add_ref(source, line, "COPY --from", "COPY --from")
        return True

    def walk_run(self, flags: Sequence[str], stage: _Stage, line: int) -> None:
        for flag in flags:
            if flag == "--":
                break
            name, value = _split_flag(flag)
            if name != "mount":
                continue
            if value is None:
                self.fail(line, "RUN --mount needs a value")
            source = self.mount_source(value, line)
            if not source:
                continue
            target = self.last_index.get(source.lower())
            if target is not None:
                if target == stage.index:
                    self.fail(line, f"RUN --mount from={source}: a stage cannot mount itself")
                continue
            if source != _SCRATCH:
                self.add_ref(source, line, "RUN --mount", "RUN --mount from=")

    def mount_source(self, options: str, line: int) -> str:
        """The `from=` of one `--mount` option string, "" when it mounts no other image."""
        try:
            fields = _csv_fields(options)
        except ValueError as exc:
            self.fail(line, f"RUN --mount={options}: {exc}")
        mount_type = "bind"
        source = ""
        bind_source = ""
        for item in fields:
            key, equals, value = item.partition("=")
            key = key.lower()
            if not equals:
                continue
            if key == "type":
                mount_type = value.lower()
            elif key in ("source", "src"):
                bind_source = value
            elif key == "from":
                if _MOUNT_VARIABLE_RE.search(value):
                    self.fail(
                        line,
                        f"RUN --mount from={value}: docker does not expand variables in"
                        " from=; name a stage (FROM ${ARG} AS name) instead",
                    )
                source = value
        if mount_type == "secret" and source:
            self.fail(line, "RUN --mount type=secret cannot have from=")
        if mount_type == "bind" and not source:
            self.add_source(bind_source or ".")
        return "" if mount_type == "tmpfs" else source


def parse_dockerfile_text(
    text: str, path: Path, build_args: dict[str, str] | None = None
) -> DockerfileInfo:
    """Every image `text` (the dockerfile at `path`) refers to that is not its own stage.

    `build_args` override ARG defaults as `docker build --build-arg` does. Any problem is
    a DockerfileError naming `path` (and the line, where there is one).
    """
    try:
        return _Walk(text, path, build_args or {}).walk()
    except DockerfileError:
        raise
    except Exception as exc:  # the contract: nothing but DockerfileError escapes
        raise DockerfileError(f"{path}: cannot read dockerfile (internal error: {exc!r})") from exc


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> DockerfileInfo:
    """Read `path` as UTF-8 (a BOM is fine) and parse it; see parse_dockerfile_text."""
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DockerfileError(f"{path}: cannot read: {reason}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DockerfileError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from exc
    return parse_dockerfile_text(text, path, build_args)
