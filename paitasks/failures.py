"""The one-line reason of a failed task: its innermost cause, in a user's words.

A failed build's error carries the build tool's last output lines, BuildKit's or the
classic builder's; a hook's carries its last lines; a push's is the registry's error.
`reason` reads the line that says what went wrong, under its wrappers ("failed to solve:
rpc error: ... failed to create LLB definition: ..."), and says it in one line:

    base ubuntu:16.04 could not be pulled: registry-1.docker.io unreachable (connection refused)
    RUN ["/bin/busybox", "false"] (line 3) exited with 1
    COPY build/missing.txt: file not found
    build-pre.sh exited with 2: cp: cannot stat 'x': No such file or directory

and otherwise the innermost part of the last error line, or the message's first line.
`excerpt` picks the few output lines around the first error, without the builder's
preamble (`#0 building with ...`, `load .dockerignore`, `DONE 0.0s`); `grouped` says
once each cause that several images share (the same unpullable bases, the same failed
hook), with the images it hit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

TAIL_MARK = "  | "  # how an error message quotes the output lines it carries
WRAPPERS = (  # BuildKit's words around the cause, outermost first
    "ERROR: ",
    "failed to solve: ",
    "rpc error: code = Unknown desc = ",
    "failed to solve with frontend dockerfile.v0: ",
    "failed to create LLB definition: ",
    "failed to compute cache key: ",
    "executor failed running ",
)
NETWORK = (  # what a failed connection says -> in a user's words
    ("proxyconnect", "proxy refused the connection"),
    ("connection refused", "connection refused"),
    ("no such host", "no such host"),
    ("i/o timeout", "timed out"),
    ("timeout", "timed out"),
    ("connection reset", "connection reset"),
)
_STEP = re.compile(r"^(?: > \[[^\]]*\] |Step \d+/\d+ : )(.+?):?$")
_BASE_STEP = re.compile(r"(?:load metadata for |^Step \d+/\d+ : FROM )(\S+)")
_HOST = re.compile(r'(?:Head|Get) "https?://([^/"]+)/')
_EXIT = re.compile(r"(?:exit code: |returned a non-zero code: )(\d+)")
_LINE = re.compile(r"^\S+:(\d+)$")
_MISSING = re.compile(r"stat (\S+): file does not exist")
_STEP_ERROR = re.compile(r"^#\d+ ERROR: ")
_PREAMBLE = re.compile(  # a builder's progress, not what went wrong
    r"^(?:#0 building with |#\d+ (?:\[internal\] |transferring |DONE \d|CACHED$|resolve |"
    r"sha256:|exporting |writing |naming |unpacking )|#\d+$|-+$|--->|Sending build context"
    r"|Removing intermediate container|DEPRECATED: The legacy builder|BuildKit is currently "
    r"disabled|environment-variable\.$)"
)
EXCERPT = 5  # lines of output shown up to and including the first error
_BASE = re.compile(r"^base (\S+) could not be pulled: (\S+) (.+)$")
IMAGE_TASKS = ("build-image", "push", "upload")  # tasks of one image: `<kind>:<image>`
_ON_BUILDER = re.compile(r"^building image \S+ on builder (\S+) failed \((.*)\);")
_HOOK = re.compile(r"^component \S+: (build-(?:pre|post)\.sh) failed \(exit (\d+)\)")


def reason(message: str) -> str:
    """The innermost cause of the failure `message` describes, in one line; a build on a
    builder of `builders=` names it."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    builder = _ON_BUILDER.match(first)
    if builder is not None:
        cause = _cause(message, first)
        if "no longer answers" in builder[2]:
            return f"builder {builder[1]} no longer answers: {cause}"
        return f"{cause} (on builder {builder[1]})"
    return _cause(message, first)


def _cause(message: str, first: str) -> str:
    if first.startswith("Traceback (most recent call last)"):  # a bug: what it raised
        return message.strip().splitlines()[-1]
    lines = [line[len(TAIL_MARK):] if line.startswith(TAIL_MARK) else line
             for line in message.splitlines()]
    hook = _HOOK.match(first)
    if hook:  # its last line that says something
        said = [line[len(TAIL_MARK):].strip() for line in message.splitlines()
                if line.startswith(TAIL_MARK) and line[len(TAIL_MARK):].strip()]
        return f"{hook[1]} exited with {hook[2]}{f': {said[-1]}' if said else ''}"
    error = next((line for line in reversed(lines) if _is_error(line)), None)
    if error is None:
        return first
    cause = _innermost(error)
    step = next((found[1] for line in reversed(lines) if (found := _STEP.match(line))), "")
    base = next((found[1] for line in lines if (found := _BASE_STEP.search(line))), "")
    host = _HOST.search(error)
    if host is not None and (base or "metadata" in error):
        return f"base {base or 'image'} could not be pulled: {host[1]} {network_words(cause)}"
    if step.split(" ", 1)[0] in ("COPY", "ADD") and (
        "not found" in cause or "no such file" in cause or "does not exist" in cause
    ):
        missing = _MISSING.search(cause)
        source = missing[1] if missing else step.split()[1]
        return f"{step.split(' ', 1)[0]} {source}: file not found"
    code = _EXIT.search(error)
    if code is not None and step.startswith("RUN "):
        line = next((found[1] for text in lines if (found := _LINE.match(text.strip()))), "")
        return f"{step}{f' (line {line})' if line else ''} exited with {code[1]}"
    return cause


def excerpt(message: str) -> list[str]:
    """The output lines a failure's `message` quotes, around the first error: the error
    line and the few before it (of its BuildKit step), the builder's preamble left out;
    without an error line (a hook), the last few lines."""
    quoted = [line[len(TAIL_MARK):].rstrip() for line in message.splitlines()
              if line.startswith(TAIL_MARK)]
    lines = [line for line in quoted if line.strip() and not _PREAMBLE.match(line.strip())]
    first = next((index for index, line in enumerate(lines)
                  if _is_error(line) or _STEP_ERROR.match(line)), None)
    if first is None:
        return lines[-EXCERPT:]
    step = re.match(r"#\d+ ", lines[first])
    before = [line for line in lines[:first] if step is None or line.startswith(step[0])]
    return [*before[-(EXCERPT - 1):], lines[first]]


def grouped(failed: Mapping[str, str], blocked: Mapping[str, Sequence[str]]) -> list[str]:
    """Each cause two or more images share, said once with the images it hit.

    `failed`: each failed task (`build-image:x`, `prebuild:c`, `push:x`...) and its
    reason; `blocked`: each image not built and the tasks it waited for that did not
    succeed. An image is hit by the failed tasks it waited for, through images that
    were not built either. Bases that could not be pulled make one group, one line each.
    """
    hit: dict[str, set[str]] = {}  # a failed task -> the images it failed
    for task in failed:
        kind, _, subject = task.partition(":")
        if kind in IMAGE_TASKS:
            hit.setdefault(task, set()).add(subject)
    for image in blocked:
        for root in _roots(image, failed, blocked):
            hit.setdefault(root, set()).add(image)
    bases: dict[str, tuple[str, str, set[str]]] = {}  # base -> host, why, images
    shared: dict[str, tuple[set[str], set[str]]] = {}  # reason -> tasks, images
    for task, images in hit.items():
        unpulled_base = _BASE.match(failed[task])
        if unpulled_base is not None:
            name, host, why = unpulled_base.groups()
            bases.setdefault(name, (host, why, set()))[2].update(images)
        else:
            tasks, together = shared.setdefault(failed[task], (set(), set()))
            tasks.add(task)
            together.update(images)
    lines = []
    unpulled = set().union(*(images for _, _, images in bases.values()))
    if len(unpulled) > 1:  # one line per registry and why, then its bases
        hosts = len({host for host, _, _ in bases.values()})
        lines.append(f"{len(unpulled)} images failed because "
                     f"{_counted(len(bases), 'external base', 'external bases')} could not be "
                     f"pulled from {_counted(hosts, 'registry', 'registries')}:")
        by_cause: dict[tuple[str, str], list[str]] = {}
        for name, (host, why, images) in sorted(bases.items()):
            by_cause.setdefault((host, why), []).append(f"    {name}: {', '.join(sorted(images))}")
        for (host, why), used in sorted(by_cause.items()):
            lines.extend([f"  {host} {why}:", *used])
    for why, (tasks, images) in sorted(shared.items()):
        if len(images) > 1:
            lines.append(f"{len(images)} images failed because {_listed(sorted(tasks))} "
                         f"failed: {why}")
            lines.append(f"  {', '.join(sorted(images))}")
    return lines


def _roots(image: str, failed: Mapping[str, str], blocked: Mapping[str, Sequence[str]]) -> set[str]:
    """The failed tasks `image` waited for, through images not built either."""
    found: set[str] = set()
    seen: set[str] = set()
    stack = [image]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for task in blocked.get(current, ()):
            kind, _, subject = task.partition(":")
            if task in failed:
                found.add(task)
            elif kind == "build-image":
                stack.append(subject)
    return found


def _counted(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _listed(names: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _is_error(line: str) -> bool:
    text = line.strip()
    return text.startswith(("ERROR:", "COPY failed", "The command ")) or bool(_HOST.search(text))


def _innermost(line: str) -> str:
    text = line.strip()
    changed = True
    while changed:
        changed = False
        for wrapper in WRAPPERS:
            if text.startswith(wrapper):
                text, changed = text[len(wrapper):], True
    return text


def network_words(cause: str) -> str:
    """Why a registry could not be read, in a few words: `unreachable (timed out)`,
    `refused access`, `does not have it`, else `failed (<cause>)`."""
    lowered = cause.lower()
    why = next((words for marker, words in NETWORK if marker in lowered), None)
    if why is not None:
        return f"unreachable ({why})"
    if "unauthorized" in lowered or "denied" in lowered:
        return "refused access"
    if "not found" in lowered or "manifest unknown" in lowered:
        return "does not have it"
    return f"failed ({cause})"
