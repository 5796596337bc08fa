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
"""

from __future__ import annotations

import re

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
_HOOK = re.compile(r"^component \S+: (build-(?:pre|post)\.sh) failed \(exit (\d+)\)")


def reason(message: str) -> str:
    """The innermost cause of the failure `message` describes, in one line."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
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
        return f"base {base or 'image'} could not be pulled: {host[1]} {_network(cause)}"
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


def _network(cause: str) -> str:
    lowered = cause.lower()
    why = next((words for marker, words in NETWORK if marker in lowered), None)
    if why is not None:
        return f"unreachable ({why})"
    if "unauthorized" in lowered or "denied" in lowered:
        return "refused access"
    if "not found" in lowered or "manifest unknown" in lowered:
        return "does not have it"
    return f"failed ({cause})"
