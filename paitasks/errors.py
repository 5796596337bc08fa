"""One exception family for everything a user can get wrong or the machine can refuse.

Every message names the culprit (file and line, component, image, registry) so the CLI
and dodo.py can print it as it is, without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class PaiTasksError(Exception):
    """Base of every error paitasks reports to a user."""


class TreeError(PaiTasksError):
    """The source tree is malformed: missing folder, bad dependency file, duplicate image."""


class DockerfileError(PaiTasksError):
    """A dockerfile cannot be read or parsed."""


class GraphError(PaiTasksError):
    """The dependency graph is unusable: a loop, or an unknown name in a selection."""


class ConfigError(PaiTasksError):
    """Registry settings are missing or malformed."""


class RegistryError(PaiTasksError):
    """The registry failed a request, or a push, after every try the policy allows
    (retries.py); the message names the registry, the image, the status and the tries."""


class HookError(PaiTasksError):
    """A build-pre.sh or build-post.sh hook failed."""


class EngineError(PaiTasksError):
    """A docker call failed. Besides the message, it carries the docker command that
    failed (empty for an API call), its exit code and its last output lines."""

    def __init__(
        self,
        message: str,
        command: Sequence[str] = (),
        exit_code: int | None = None,
        output: str = "",
    ) -> None:
        super().__init__(message)
        self.command = list(command)
        self.exit_code = exit_code
        self.output = output
