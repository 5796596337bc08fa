"""The one policy for "up to date": doit's uptodate checks for images and pushes.

An image is up to date when the engine holds `<image>:latest` with a fingerprint label
equal to the fingerprint of what a build would see now (inputs.py gathers it). A push is
up to date when the registry serves, for name:tag, the digest this engine recorded when
it last pushed the same image.

Each check keeps its reason in words, which `doit info` and `doit list --status` show and
the build step prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from paitasks.errors import PaiTasksError
from paitasks.inputs import LABEL, BuildInputs, ImageSpec, explain, fingerprint, gather, load_record
from paitasks.run import Run
from paitasks.tempfolders import temporary


@dataclass(frozen=True)
class Assessment:
    inputs: BuildInputs
    fingerprint: str
    fresh: bool
    reasons: tuple[str, ...]

    @property
    def reads_temp_folders(self) -> bool:
        """Whether the build reads anything in `dependency/` or `generated/`."""
        return any(temporary(path) for path in self.inputs.files)


def assess(run: Run, spec: ImageSpec, predict: bool | None = None) -> Assessment:
    """Gather the inputs now, fingerprint them, and compare with the engine's image.
    `predict` (default: when the run is not executing tasks) predicts what hooks make."""
    if predict is None:
        predict = not run.executing
    gathered = gather(run, spec, predict)
    inputs, previous = gathered.inputs, gathered.previous
    wanted = fingerprint(inputs)
    current = run.images.get(spec.name)
    if current is None:
        result = Assessment(inputs, wanted, False, ("not in the engine",))
    elif current.labels.get(LABEL) == wanted:
        result = Assessment(inputs, wanted, True, ())
    elif LABEL not in current.labels:
        reason = "the engine's image was not built by paitasks"
        result = Assessment(inputs, wanted, False, (reason,))
    else:
        previous = previous or load_record(run.state, spec.name)
        if previous is not None and fingerprint(previous) != current.labels.get(LABEL):
            previous = None  # the record is of another build than the engine's image
        result = Assessment(inputs, wanted, False, tuple(explain(previous, inputs)))
    if gathered.assumed and previous is not None:
        note = "assuming copy-deps and hooks make the same files as last time"
        result = dataclasses.replace(result, reasons=(*result.reasons, note))
    if not predict:
        run.keep_assessment(spec.name, result)
    return result


class CopiesDeferred:
    """doit uptodate check for `copy-deps:C` where no hook needs the copies up front:
    they are made when a hook that runs, an image that builds or a component that copies
    C reads them (tempfolders.py), so a run where everything is up to date copies nothing."""

    def __call__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "copy-deps: made only when a hook, an image build or a dependent reads them"


class ImageUpToDate:
    """doit uptodate check for `build-image:<name>`; its repr says why.

    In a run, images are checked in build order, so a base is rebuilt before its
    dependents are checked against its new id. Outside a run (`doit list --status`,
    `doit info`) nothing is rebuilt, so the check follows the graph instead: an image
    whose tree base would rebuild would rebuild too."""

    def __init__(self, run: Run, spec: ImageSpec, predictions: Predictions) -> None:
        self.run = run
        self.spec = spec
        self.predictions = predictions
        self.reason = "not checked"
        predictions.add(spec)

    def __call__(self, task: Any, values: Any) -> bool:
        try:
            if self.run.executing:
                result = assess(self.run, self.spec)
                fresh, reasons = result.fresh, result.reasons
            else:
                fresh, reasons = self.predictions.predict(self.spec.name)
        except PaiTasksError as exc:
            self.reason = str(exc)
            return False
        self.reason = "; ".join(("up to date", *reasons) if fresh else reasons)
        return fresh

    def __repr__(self) -> str:
        return f"image {self.spec.name}: {self.reason}"


class Predictions:
    """Outside a run: which images of one planning would rebuild and why, following the
    graph (an image whose tree base would rebuild rebuilds too); shared by their checks."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.specs: dict[str, ImageSpec] = {}
        self.memo: dict[str, tuple[bool, tuple[str, ...]]] = {}

    def add(self, spec: ImageSpec) -> None:
        self.specs[spec.name] = spec

    def predict(self, name: str) -> tuple[bool, tuple[str, ...]]:
        """(fresh, reasons) for image `name`."""
        memo = self.memo
        stack = [name]
        while stack:  # depth first, without recursion: chains can be long
            current = stack[-1]
            if current in memo:
                stack.pop()
                continue
            spec = self.specs[current]
            pending = [used for used in spec.uses if used in self.specs and used not in memo]
            if pending:
                stack.extend(pending)
                continue
            result = assess(self.run, spec, predict=True)
            stale = [
                f"uses {used}, which rebuilds"
                for used in spec.uses
                if used in memo and not memo[used][0]
            ]
            if not result.fresh:
                stale += result.reasons
            memo[current] = (False, tuple(stale)) if stale else (True, result.reasons)
            stack.pop()
        return memo[name]


class PushUpToDate:
    """doit uptodate check for a push: the registry already serves this image."""

    def __init__(self, run: Run, image: str) -> None:
        self.run = run
        self.image = image
        self.reason = "not checked"

    def __call__(self, task: Any, values: Any) -> bool:
        try:
            fresh, self.reason = pushed_already(self.run, self.image)
        except PaiTasksError as exc:
            self.reason = str(exc)
            return False
        return fresh

    def __repr__(self) -> str:
        return f"push of {self.image}: {self.reason}"


def pushed_already(run: Run, image: str) -> tuple[bool, str]:
    settings = run.registry()
    local = run.images.get(image)
    if local is None:
        return False, "image not built yet"
    repository = settings.repository(image)
    known = {
        entry.split("@", 1)[1]
        for entry in local.repo_digests
        if entry.split("@", 1)[0] == repository
    }
    if not known:
        return False, f"this image was never pushed to {repository}"
    path = repository.removeprefix(f"{settings.domain}/")
    from paitasks.registry import Registry  # urllib: only when pushing

    served = Registry(settings.registry, settings.username, settings.password).manifest_digest(
        path, settings.tag
    )
    if served is None:
        return False, f"{settings.image_name(image)} is not in the registry"
    if served not in known:
        return False, f"{settings.image_name(image)} in the registry is another image"
    return True, f"{settings.image_name(image)} already serves {served}"
