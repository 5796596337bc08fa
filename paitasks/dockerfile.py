"""Read what the graph needs from a dockerfile: the images it uses, the context it reads.

BuildKit's own parser (PyPI `dockerfile`) splits the file into instructions; this module
follows BuildKit's frontend only as far as the graph needs, and leaves every other check
to BuildKit when it builds:

* FROM, with ARGs substituted (global ARGs, build args, BuildKit's predefined platform
  ARGs). FROM names an earlier `AS` stage only when the expanded name equals it exactly
  (stage names are lower-cased, so `FROM Builder` is an invalid image name: refused here
  with a hint). `scratch` is never an image.
* COPY --from (a stage name in any case, a stage index, or an image) and RUN --mount
  from= (a stage name or an image). BuildKit expands no ARGs there, so `$` is refused.
* ONBUILD triggers (run in the stages built FROM their stage), the context paths COPY,
  ADD and bind mounts read, the ARGs the file declares.

Word expansion supports `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
`${VAR+word}`, `${VAR:?word}`, `${VAR?word}`, quotes and escapes; any other form
(`${VAR#...}`, `${VAR%...}`, `${VAR/...}`, `$1`...) is a DockerfileError naming file and line.
"""

from __future__ import annotations

import csv
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import dockerfile

from paitasks import reference
from paitasks.errors import DockerfileError

__all__ = [
    "DockerfileInfo",
    "ImageRef",
    "RefKind",
    "parse_dockerfile",
    "parse_dockerfile_text",
    "rewrite_images",
]

RefKind = Literal["FROM", "COPY --from", "RUN --mount"]


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


# -- word expansion: the forms real dockerfiles use in FROM and ARG, nothing more --------

_NAME_RE = re.compile(r"[^\W\d]\w*")
_OPERATORS = (":-", ":+", ":?", "-", "+", "?")
_SPECIAL_PARAMS = "0123456789@*#?-$!"  # $1, $@, ...: shell parameters
_SUPPORTED = "$VAR, ${VAR}, ${VAR:-word}, ${VAR-word}, ${VAR:+word}, ${VAR+word}, ${VAR:?word}"


class _ExpandError(Exception):
    """A word cannot be expanded; the caller adds file and line."""


class _Expansion:
    """One word run through BuildKit's expansion rules against a set of ARG values."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.pos = 0
        self.names: list[str] = []  # every variable looked up, for error messages

    def next_is(self, chars: str) -> bool:
        return self.pos < len(self.text) and self.text[self.pos] in chars

    def word(self, stop: str = "", quoted: bool = False) -> str:
        """Expand up to `stop` (consumed) or the end: ARGs substituted, quotes and escapes
        removed; `quoted`: inside double quotes, where only `\\"`, `\\$` and `\\\\` escape."""
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == stop:
                return "".join(out)
            if char == "$":
                out.append(self.dollar())
            elif char == self.escape and (not quoted or self.next_is(f'"${self.escape}')):
                out.append(text[self.pos : self.pos + 1])
                self.pos += 1
            elif char == '"' and not quoted:
                out.append(self.word('"', quoted=True))
            elif char == "'" and not quoted:
                end = text.find("'", self.pos)
                if end < 0:
                    raise _ExpandError("missing closing single quote")
                out.append(text[self.pos : end])
                self.pos = end + 1
            else:
                out.append(char)
        if stop:
            raise _ExpandError("missing closing double quote" if quoted else f"missing '{stop}'")
        return "".join(out)

    def lookup(self, name: str) -> str | None:
        self.names.append(name)
        return self.env.get(name)

    def dollar(self) -> str:
        text = self.text
        braced = self.next_is("{")
        self.pos += int(braced)
        match = _NAME_RE.match(text, self.pos)
        if match is None:
            if self.next_is(_SPECIAL_PARAMS):
                raise _ExpandError(self.unsupported(text[self.pos], braced))
            if braced:
                raise _ExpandError("bad substitution" if self.next_is("}:") else "missing '}'")
            return "$"  # a `$` before anything else stays
        name = match.group()
        self.pos = match.end()
        if not braced or self.next_is("}"):
            self.pos += int(braced)
            return self.lookup(name) or ""
        if self.pos == len(text):
            raise _ExpandError("missing '}'")
        operator = next((op for op in _OPERATORS if text.startswith(op, self.pos)), None)
        if operator is None:
            raise _ExpandError(self.unsupported(name + text[self.pos : self.pos + 1], braced))
        self.pos += len(operator)
        word = self.word("}")
        value = self.lookup(name)
        empty = value is None or (operator.startswith(":") and not value)
        if operator.endswith("-"):
            return word if empty else value or ""
        if operator.endswith("+"):
            return "" if empty else word
        if empty:
            raise _ExpandError(f"{name}: {word or 'is not set'}")
        return value or ""

    @staticmethod
    def unsupported(start: str, braced: bool) -> str:
        form = "${" + start + "...}" if braced else "$" + start
        return f"paitasks does not support {form} (only {_SUPPORTED})"


# -- the dockerfile walk -----------------------------------------------------------------

_SCRATCH = "scratch"
_INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK"}
_INSTRUCTIONS |= {"LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME"}
_INSTRUCTIONS |= {"WORKDIR"}
_DIRECTIVE_RE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*", re.ASCII)
_ONBUILD_PREFIX_RE = re.compile(r"\s*ONBUILD\s*", re.IGNORECASE)
_STAGE_INDEX_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_VARIABLE_RE = re.compile(r"\$.", re.DOTALL)
_REMOTE_SOURCE_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
# Go's unicode.IsSpace, which BuildKit uses to trim lines; Python's isspace() differs.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
_GO_SPACE += "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# platform.machine() -> (GOARCH, variant)
_MACHINES = {"x86_64": ("amd64", ""), "aarch64": ("arm64", ""), "armv7l": ("arm", "v7")}
_MACHINES |= {"armv6l": ("arm", "v6"), "i386": ("386", ""), "i686": ("386", "")}


def _platform_args() -> dict[str, str]:
    """BuildKit's predefined global ARGs, for a build on (and for) this machine."""
    machine = platform.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    spec = f"linux/{arch}" + (f"/{variant}" if variant else "")
    args: dict[str, str] = {}
    for side in ("BUILD", "TARGET"):
        args |= {f"{side}PLATFORM": spec, f"{side}OS": "linux", f"{side}OSVERSION": ""}
        args |= {f"{side}ARCH": arch, f"{side}VARIANT": variant}
    return args


def _escape_token(text: str) -> str:
    """The `# escape=` parser directive's character, which word expansion needs too."""
    escape = "\\"
    for line in text.removeprefix("\ufeff").split("\n"):
        match = _DIRECTIVE_RE.fullmatch(line.strip(_GO_SPACE))
        if match is None:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
    return escape


def _flag_values(flags: Sequence[str], name: str) -> list[str]:
    """The values of every `--name=value` flag."""
    prefix = f"--{name}="
    return [flag[len(prefix) :] for flag in flags if flag.startswith(prefix)]


def _instruction(command: dockerfile.Command) -> str:
    return (command.cmd or "").upper()


_Stages = dict[str, list[tuple[int, dockerfile.Command]]]


def _stage_name(command: dockerfile.Command) -> str:
    """The lower-cased `AS` name of a FROM, "" if none."""
    args = command.value
    return args[2].lower() if len(args) == 3 and args[1].lower() == "as" else ""


class _Walk:
    """One pass over a parsed dockerfile, collecting refs; every problem is a DockerfileError."""

    def __init__(self, path: Path, build_args: Mapping[str, str]) -> None:
        self.path = path
        self.build_args = build_args
        self.escape = "\\"
        self.refs: list[ImageRef] = []
        self.env: dict[str, str] = {}  # the global ARGs FROM sees
        self.stage_names: set[str] = set()  # every stage's name (COPY --from, mounts)
        self.earlier: _Stages = {}  # earlier stages (FROM) -> their ONBUILD triggers
        self.sources: list[str] | None = []  # context paths read; None: all of it

    def fail(self, line: int | None, message: str) -> NoReturn:
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        raise DockerfileError(f"{where}: {message}")

    def parse(self, text: str, line: int | None = None) -> tuple[dockerfile.Command, ...]:
        """BuildKit's parse of `text`, its errors turned into ours."""
        try:
            commands: tuple[dockerfile.Command, ...] = dockerfile.parse_string(text)
        except dockerfile.GoParseError as exc:
            if str(exc) == "file with no instructions" and line is None:
                self.fail(None, "no instructions (the file is empty or only comments)")
            self.fail(line, f"cannot parse: {exc}")
        return commands

    def expand(self, word: str, line: int, what: str) -> tuple[str, list[str]]:
        """`word` with the global ARGs substituted, and the names it looked up."""
        expansion = _Expansion(word, self.env, self.escape)
        try:
            return expansion.word(), expansion.names
        except _ExpandError as exc:
            self.fail(line, f"cannot expand {what} {word!r}: {exc}")
        except RecursionError:
            self.fail(line, f"cannot expand {what}: nested too deeply")

    def walk(self, text: str) -> DockerfileInfo:
        try:
            text.encode("utf-8")  # the parser's binding would crash on a lone surrogate
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            self.fail(line, "text is not valid Unicode (lone surrogate)")
        nul = text.find("\0")
        if nul >= 0:  # and silently cut the text at a NUL
            self.fail(text.count("\n", 0, nul) + 1, "contains a NUL character")
        self.escape = _escape_token(text)
        commands = self.parse(text)
        kinds = [_instruction(command) for command in commands]
        # BuildKit would refuse these too, but only once hooks have run: say so before.
        first = kinds.index("FROM") if "FROM" in kinds else len(kinds)
        for number, (command, kind) in enumerate(zip(commands, kinds, strict=True)):
            if kind and kind not in _INSTRUCTIONS:
                self.fail(command.start_line, f"unknown instruction: {command.cmd}")
            if number < first and kind not in ("ARG", ""):
                self.fail(command.start_line, f"{kind} before the first FROM (only ARG may be)")
        if first == len(kinds):
            self.fail(None, "no FROM instruction")
        stages = [command for command, kind in zip(commands, kinds, strict=True) if kind == "FROM"]
        self.stage_names = {_stage_name(command) for command in stages} - {""}
        self.global_args(commands[:first], _stage_name(stages[-1]))
        triggers: list[tuple[int, dockerfile.Command]] = []  # the current stage's
        for command, kind in zip(commands[first:], kinds[first:], strict=True):
            if kind == "FROM":
                triggers = []
                self.walk_from(command)
                if _stage_name(command):  # FROM sees earlier stages only, not its own
                    self.earlier[_stage_name(command)] = triggers
            elif kind == "ONBUILD":
                trigger = self.read_trigger(command)
                if trigger is not None:
                    triggers.append((command.start_line, trigger))
            else:
                self.walk_command(command, command.start_line)
        onbuild = any(
            _instruction(trigger) in ("COPY", "ADD") and not _flag_values(trigger.flags, "from")
            for _, trigger in triggers
        )
        declared = (
            item.partition("=")[0]
            for command, kind in zip(commands, kinds, strict=True)
            if kind == "ARG"
            for item in command.value
        )
        return DockerfileInfo(
            path=self.path,
            refs=tuple(sorted(dict.fromkeys(self.refs), key=lambda ref: ref.line)),
            stages=tuple(name for name in map(_stage_name, stages) if name),
            context=None if self.sources is None else tuple(dict.fromkeys(self.sources)),
            onbuild_reads_context=onbuild,
            args=tuple(sorted({name for name in declared if name})),
        )

    def global_args(self, meta: Sequence[dockerfile.Command], last_stage: str) -> None:
        """The ARG values FROM lines see: predefined ones, then ARGs before the first FROM."""
        env = self.env = _platform_args()
        env["TARGETSTAGE"] = last_stage
        env |= {key: value for key, value in self.build_args.items() if key in env}
        for command in meta:
            for item in command.value if _instruction(command) == "ARG" else ():
                key, equals, default = item.partition("=")
                if key in self.build_args:
                    env[key] = self.build_args[key]
                elif key and equals:
                    env[key] = self.expand(default, command.start_line, f"ARG {key}")[0]

    def read_trigger(self, command: dockerfile.Command) -> dockerfile.Command | None:
        """Parse an ONBUILD trigger on its own, as BuildKit does when a child stage runs it;
        only the instructions that can use an image or the context matter."""
        if (command.sub_cmd or "").upper() not in ("COPY", "ADD", "RUN"):
            return None
        expression = _ONBUILD_PREFIX_RE.sub("", command.original or "", count=1)
        triggers = self.parse(expression, command.start_line)
        return triggers[0] if triggers else None

    def add_ref(self, text: str, line: int, kind: RefKind) -> None:
        if text == _SCRATCH:
            return
        try:
            reference.parse(text)
        except reference.ReferenceError as exc:
            self.fail(line, f"{kind} {text!r} is not a valid image reference: {exc}")
        self.refs.append(ImageRef(text, line, kind))

    def walk_from(self, command: dockerfile.Command) -> None:
        line = command.start_line
        if not command.value:
            self.fail(line, "FROM names no image")
        base, looked_up = self.expand(command.value[0], line, "FROM")
        if not base:
            detail = ", ".join(f"ARG {name} is empty" for name in dict.fromkeys(looked_up))
            self.fail(line, "FROM names no image" + (f" ({detail})" if detail else ""))
        if base in self.earlier:
            for trigger_line, trigger in self.earlier[base]:  # a child stage runs them
                self.walk_command(trigger, trigger_line)
        elif base.lower() in self.earlier:
            self.fail(
                line,
                f"FROM {base}: docker only matches a stage when FROM spells its name in lower"
                f" case (FROM {base.lower()}); otherwise it is an image name, and an invalid one",
            )
        else:
            self.add_ref(base, line, "FROM")

    def walk_command(self, command: dockerfile.Command, line: int) -> None:
        instruction = _instruction(command)
        if instruction in ("COPY", "ADD"):
            sources = [value for value in _flag_values(command.flags, "from") if value]
            if instruction == "COPY" and sources:
                self.use_stage_or_image(sources[-1], line, "COPY --from")
            else:
                self.read_context(command)
        elif instruction == "RUN":
            for options in _flag_values(command.flags, "mount"):
                self.walk_mount(options, line)

    def use_stage_or_image(self, source: str, line: int, kind: RefKind) -> None:
        """COPY --from / RUN --mount from=: a stage (by name, COPY also by index) or an image."""
        if _VARIABLE_RE.search(source):
            self.fail(
                line,
                f"{kind} {source!r}: docker does not expand variables there; name a stage"
                " (FROM ${ARG} AS name) and use its name instead",
            )
        if source.lower() in self.stage_names:
            return
        if kind == "COPY --from" and _STAGE_INDEX_RE.fullmatch(source):
            return  # a stage index; BuildKit checks the range
        self.add_ref(source, line, kind)

    def walk_mount(self, options: str, line: int) -> None:
        """One `--mount` option string: BuildKit reads it as a CSV record."""
        try:
            fields = next(csv.reader([options], strict=True), [])
        except csv.Error as exc:
            self.fail(line, f"RUN --mount={options}: {exc}")
        settings: dict[str, str] = {}
        for item in fields:
            key, equals, value = item.partition("=")
            if equals:
                settings[key.lower()] = value
        mount_type = settings.get("type", "bind").lower()
        source = settings.get("from", "")
        if mount_type == "tmpfs":
            return
        if source:
            self.use_stage_or_image(source, line, "RUN --mount")
        elif mount_type == "bind":
            self.add_source(settings.get("source") or settings.get("src") or ".")

    def read_context(self, command: dockerfile.Command) -> None:
        """Note the context paths a COPY or ADD (without --from) reads."""
        heredocs = {doc.name for doc in command.heredocs}
        for source in command.value[:-1]:
            if source.startswith("<<") and source.lstrip("<-").strip("'\"") in heredocs:
                continue
            if _instruction(command) == "ADD" and _REMOTE_SOURCE_RE.match(source):
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


def parse_dockerfile_text(
    text: str, path: Path, build_args: dict[str, str] | None = None
) -> DockerfileInfo:
    """Every image `text` (the dockerfile at `path`) refers to that is not its own stage.

    `build_args` override ARG defaults as `docker build --build-arg` does. Any problem is
    a DockerfileError naming `path` (and the line, where there is one).
    """
    try:
        return _Walk(path, build_args or {}).walk(text)
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


# -- rewriting image references ----------------------------------------------------------

_WORD_RE = re.compile(r"[^\t\v\f\r ]+")
_Word = tuple[int, int, str]  # (line index, column, word)
_Span = tuple[int, int, int]  # (line index, start column, end column)


def _words(lines: Sequence[str], command: dockerfile.Command, escape: str) -> list[_Word]:
    """The words of `command` where they stand in `lines`: continuation lines followed
    (comment and blank lines between them skipped), heredoc bodies left out."""
    continuation = re.compile(re.escape(escape) + r"[ \t]*\r?$")
    words: list[_Word] = []
    for index in range(command.start_line - 1, command.end_line):
        line = lines[index]
        if index >= command.start_line and line.strip(_GO_SPACE)[:1] in ("", "#"):
            continue
        match = continuation.search(line)
        body = line if match is None else line[: match.start()]
        words += [(index, word.start(), word.group()) for word in _WORD_RE.finditer(body)]
        if match is None:
            break
    return words


def _spans(ref: ImageRef, command: dockerfile.Command, words: list[_Word]) -> list[_Span]:
    """Where `ref` is written among its instruction's words, as (line index, start, end)."""
    flags: list[_Word] = []
    for word in words[1:]:
        if not word[2].startswith("--") or word[2] == "--":
            break
        flags.append(word)
    if ref.kind == "FROM":
        rest = words[1 + len(flags) :]
        if rest and command.value and rest[0][2] == command.value[0]:
            return [(rest[0][0], rest[0][1], rest[0][1] + len(rest[0][2]))]
        return []
    if ref.kind == "COPY --from":
        flag = "--from=" + ref.reference
        skip = len("--from=")
        return [(line, at + skip, at + len(flag)) for line, at, text in flags if text == flag]
    spans: list[_Span] = []
    for line, column, text in flags:
        if not text.startswith("--mount="):
            continue
        start = column + len("--mount=")
        for field in text[len("--mount=") :].split(","):
            key, _, value = field.partition("=")
            if key.lower() == "from" and value == ref.reference:
                spans.append((line, start + len(key) + 1, start + len(field)))
            start += len(field) + 1
    return spans


def rewrite_images(
    text: str,
    path: Path,
    replace: Callable[[str], str | None],
    build_args: Mapping[str, str] | None = None,
) -> str:
    """`text` (the dockerfile at `path`) with image references replaced, for a build that
    must use, say, a base pinned by digest instead of its local name.

    Each ref parse_dockerfile_text reports (FROM after ARG substitution, COPY --from,
    RUN --mount from=) is passed to `replace`; where it returns a reference, that is
    written in place of the word (`FROM ${BASE}` becomes `FROM <literal>`; flags and
    `AS name` stay). Stages and `scratch` are never refs. Only those words change: the
    result has the same lines, the others byte-identical, so BuildKit's line numbers
    still match the user's file. ONBUILD triggers are left as they are and not passed
    to `replace` (nor is a base image's ONBUILD that names a tree image rewritten).

    A replacement that is not a valid reference (a bug in the caller), or a ref written
    in a form this cannot locate exactly (quotes, escapes, a word split by a
    continuation), is a DockerfileError naming file and line; so is a result that would
    not parse to the intended refs.
    """
    args = dict(build_args or {})
    refs = parse_dockerfile_text(text, path, args).refs
    commands = {command.start_line: command for command in dockerfile.parse_string(text)}
    escape = _escape_token(text)
    lines = text.split("\n")
    edits: dict[_Span, str] = {}
    expected: list[ImageRef] = []
    for ref in refs:
        command = commands[ref.line]
        new = None if _instruction(command) == "ONBUILD" else replace(ref.reference)
        expected.append(ref if new is None else ImageRef(new, ref.line, ref.kind))
        if new is None:
            continue
        try:
            reference.parse(new)
        except reference.ReferenceError as exc:
            raise DockerfileError(
                f"{path}:{ref.line}: cannot rewrite {ref.kind} {ref.reference!r} to {new!r}:"
                f" not a valid image reference ({exc}); this is a bug in the caller"
            ) from exc
        spans = _spans(ref, command, _words(lines, command, escape))
        if not spans:
            raise DockerfileError(
                f"{path}:{ref.line}: cannot rewrite {ref.kind} {ref.reference!r}: it is not"
                " written as one plain word (quotes, escapes or a word split over lines)"
            )
        edits |= dict.fromkeys(spans, new)
    for (index, start, end), new in sorted(edits.items(), reverse=True):
        lines[index] = lines[index][:start] + new + lines[index][end:]
    result = "\n".join(lines)
    got = parse_dockerfile_text(result, path, args).refs
    if got != tuple(sorted(dict.fromkeys(expected), key=lambda ref: ref.line)):
        raise DockerfileError(
            f"{path}: cannot rewrite its image references: the result would refer to"
            f" {[ref.reference for ref in got]} (a replacement names a stage, or a bug)"
        )
    return result
