"""The one policy for "up to date": doit's uptodate checks for images and pushes.

An image is up to date when the engine holds `<image>:latest` with a fingerprint label
equal to the fingerprint of what a build would see now (inputs.py gathers it), or, with a
registry (`config=`), when the registry serves an image under that fingerprint's tag
(registry.py): a fresh runner then builds nothing. A push is up to date when the
registry's `<image>:<tag>` serves what the fingerprint tag serves.

Each check keeps its reason in words, which `doit info` and `doit list --status` show and
the build step prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from paitasks.engine import build_tool
from paitasks.errors import PaiTasksError
from paitasks.fingerprint import LABEL, Finding, explain, fingerprint
from paitasks.graph import dependencies_first
from paitasks.inputs import (
    Gathered,
    ImageSpec,
    external_digest,
    gather,
    last_builder,
    load_record,
    record_path,
    save_record,
)
from paitasks.publish import bring, published_digests
from paitasks.reference import engine_name
from paitasks.run import Run
from paitasks.tempfolders import temporary


def reads_temp_folders(finding: Finding) -> bool:
    """Whether the build reads anything in `dependency/` or `generated/`."""
    return any(temporary(path) for path in finding.inputs.files)


def _gather(
    run: Run, spec: ImageSpec, predict: bool, bases: Mapping[str, str] | None = None
) -> Gathered:
    """`gather` with the run's services; tree bases count by the fingerprints the run
    found, or by `bases` where given."""
    if bases is None:
        bases = {name: found for name in spec.uses if (found := run.findings.fingerprint(name))}
    # With a registry, an external base the engine lacks counts by the digest served now.
    served = run.bases if run.remote is not None else None
    externals = {name: external_digest(run.images, served, name) for name in spec.external}
    return gather(
        spec, predict, contents=run.contents, state=run.state,
        build_tool=build_tool(spec.build_tool), bases=bases,
        externals=externals,
    )


def assess(run: Run, spec: ImageSpec, predict: bool | None = None) -> Finding:
    """Gather the inputs now, fingerprint them, and look for an image built from them:
    in the engine under the image's name, else (with a registry) under its fingerprint
    tag in the registry. `predict` (default: when the run is not executing tasks)
    predicts what hooks make."""
    if predict is None:
        predict = not run.executing
    gathered = _gather(run, spec, predict)
    inputs, previous = gathered.inputs, gathered.previous
    wanted = fingerprint(inputs)
    current = run.images.get(spec.name)
    remote = run.remote
    if current is not None and current.labels.get(LABEL) == wanted:
        result = Finding(inputs, wanted, True, (), "engine")
    else:
        if current is not None and remote is not None and not predict:
            run.findings.note_stale(spec.name)  # current after this run, or untagged
        served = remote.find(spec.name, wanted) if remote is not None else None
        if served is not None:
            assert remote is not None
            reason = f"up to date in the registry ({remote.by_digest(spec.name, served)})"
            result = Finding(inputs, wanted, True, (reason,), "registry", served)
        elif current is None and remote is None:
            result = Finding(inputs, wanted, False, ("not in the engine",))
        elif spec.name in run.distrusted:  # the registry's image says other inputs
            result = Finding(inputs, wanted, False, (run.distrusted[spec.name],))
        elif current is None:
            # What changed since the last build here says more than where it is not.
            previous = previous or load_record(run.state, spec.name)
            reasons = tuple(explain(previous, inputs)) if previous is not None else ()
            missing = "neither the engine nor the registry holds an image of these inputs"
            result = Finding(inputs, wanted, False, reasons or (missing,))
        elif LABEL not in current.labels:
            reason = "the engine's image was not built by paitasks"
            result = Finding(inputs, wanted, False, (reason,))
        else:
            previous = previous or load_record(run.state, spec.name)
            if previous is not None and fingerprint(previous) != current.labels.get(LABEL):
                previous = None  # the record is of another build than the engine's image
            result = Finding(inputs, wanted, False, tuple(explain(previous, inputs)))
    if gathered.predicted and previous is not None:
        note = "predicted: copy-deps and hooks make the same files as last time"
        result = dataclasses.replace(result, reasons=(*result.reasons, note))
    elif gathered.predicted and not result.fresh:
        reason = (
            "what copy-deps and the hooks make is not known before they run (no record "
            "of a previous build here; a hook can declare its inputs in build/hook-inputs)"
        )
        result = dataclasses.replace(result, reasons=(reason,), predicted=True)
    run.findings.record(spec.name, result, for_build=not predict)
    if not predict and result.fresh and not record_path(run.state, spec.name).exists():
        # What the hooks made, for predictions (`pai-build plan`) on this machine.
        save_record(run.state, spec.name, inputs, current.id if current else "")
    return result


def untag_stale(run: Run) -> None:
    """At the end of a run with a registry: each local name of the run's images points
    at its current image, or at nothing (an old image under the name is untagged when
    the registry holds the current one)."""
    stale = []
    for name in run.findings.stale():
        current, wanted = run.images.get(name), run.findings.fingerprint(name)
        if current is not None and current.labels.get(LABEL) != wanted:
            stale.append(name)
    if stale:
        try:
            run.engine.remove_images(stale)
        except PaiTasksError as exc:
            print(f"paitasks: could not untag stale images: {exc}", file=sys.stderr)


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

    def __init__(self, run: Run, spec: ImageSpec, ahead: Lookahead) -> None:
        self.run = run
        self.spec = spec
        self.ahead = ahead
        self.predictions = ahead.predictions
        self.reason = "not checked"
        ahead.add(spec)

    def __call__(self, task: Any, values: Any) -> bool:
        started = time.time()
        fresh = self._check()
        if self.run.executing:
            self.run.output.note_check(f"build-image:{self.spec.name}", started, fresh)
        return fresh

    def _check(self) -> bool:
        run = self.run
        try:
            if run.executing:
                for base in self.spec.uses:  # checked first, unless doit was told -s
                    if run.findings.fingerprint(base) is None:
                        self.predictions.predict(base)
                result = assess(run, self.spec)
                self.ahead.learned(self.spec.name, result.fingerprint)
                fresh, reasons = result.fresh, result.reasons
                if fresh and result.where == "registry" and run.settings.pull:
                    fresh, reasons = False, (*reasons, "pull=1: bringing it into the engine")
            else:
                fresh, reasons = self.predictions.predict(self.spec.name)
                builder = last_builder(run.state, self.spec.name)
                if builder is not None:
                    reasons = (*reasons, f"last built on builder {builder}")
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

    def __init__(self, run: Run, specs: Mapping[str, ImageSpec]) -> None:
        self.run = run
        self.specs = specs
        self.memo: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self.predicted: set[str] = set()  # verdicts that rest on a prediction

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
            if result.fresh:
                memo[current] = (True, result.reasons)
            else:
                rebuilt = [used for used in spec.uses if used in memo and not memo[used][0]]
                unknown = [used for used in rebuilt if used in self.predicted]
                reasons = [
                    f"uses {used}, which "
                    + ("is decided when its hooks run" if used in unknown else "rebuilds")
                    for used in rebuilt
                ]
                memo[current] = (False, (*reasons, *result.reasons))
                if result.predicted or unknown:
                    self.predicted.add(current)
            stack.pop()
        return memo[name]


def absent_bases(run: Run, spec: ImageSpec) -> list[str]:
    """The external bases of `spec` the engine does not hold: a build must pull them."""
    return [name for name in spec.external if run.images.get(engine_name(name)) is None]


class Lookahead:
    """Every registry question a run can know before its checks reach it, asked at once.

    doit checks one task at a time, so a question asked by each check costs a round trip
    of its own. When the run begins, this computes the fingerprint of every image whose
    inputs are known then (those of images behind a hook that declares no inputs are
    not) and asks for all their fingerprint tags, every `:tag` to push and every
    external base at once; each time a check learns a fingerprint nobody could know
    before (after a hook), it asks at once for the images built on it. The checks then
    read the answers (registry.py keeps them). A prediction that turns out wrong costs only
    the question the check then asks itself: nothing is decided here.

    In a run that builds here, an image the registry turns out not to hold for its
    fingerprint will be built: its tree bases that the registry holds are brought into
    the engine at once, in the background (publish.bring), while the run goes on with
    other checks and hooks; its build then finds them there."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.specs: dict[str, ImageSpec] = {}  # every image of the tree (`add`)
        self.predictions = Predictions(run, self.specs)
        self._images: set[str] = set()  # the run's
        self._expected: dict[str, str] = {}  # fingerprints computed ahead
        self._users: dict[str, list[str]] | None = None
        self._lock = threading.Lock()
        self._bringing: ThreadPoolExecutor | None = None  # runs that build here (`start`)

    def add(self, spec: ImageSpec) -> None:
        self.specs[spec.name] = spec

    def start(self, images: Sequence[str], pushes: Sequence[str]) -> None:
        """When the run begins: ask every question it can know now, at once (the
        fingerprint tags of `images`, the `:tag` of `pushes`, the external bases the
        engine lacks), and
        check the registry, so that one unreachable or refusing the login stops the run
        before any work."""
        external = dict.fromkeys(name for image in images if image in self.specs
                                 for name in absent_bases(self.run, self.specs[image]))
        if external:  # the engine pulls them: asked of it, so a base it cannot get
            self.run.bases.ask(external)  # fails its images before any build
        remote = self.run.remote
        if remote is None or not (images or pushes):
            return
        if self.run.builders is None and images:
            self._bringing = ThreadPoolExecutor(2, thread_name_prefix="paitasks-bring")
        asked = self(images, pushes)
        remote.check(asked[0] if asked else remote.by_tag([*images, *pushes][0]))

    def __call__(self, images: Sequence[str], pushes: Sequence[str]) -> list[str]:
        """Ask at once; the references asked."""
        remote = self.run.remote
        if remote is None:
            return []
        self._images = set(images) | set(pushes)
        order = dependencies_first({name: spec.uses for name, spec in self.specs.items()})
        asked = [remote.by_tag(image) for image in _in_order(pushes, order)]
        remote.prefetch(asked)
        return asked + self._ask(_in_order(self._images, order))

    def learned(self, name: str, found: str) -> None:
        """A check found `name`'s fingerprint: ask for the images built on it, if this
        is news."""
        if self.run.remote is None:
            return
        with self._lock:
            if self._expected.get(name) == found:
                return
            self._expected[name] = found
        self._ask(self._built_on(name))

    def after_hook(self, images: Sequence[str]) -> None:
        """A component's build-pre.sh just ran, in a worker thread: what its `images`
        are built from is known now. Ask for them and for what is built on them now,
        rather than one at a time when doit's checks reach them."""
        run = self.run
        if run.remote is None:
            return
        names = [name for name in images if name in self._images and name in self.specs]
        for name in names:
            spec = self.specs[name]
            bases = {base: self._known(base) for base in spec.uses}
            known = {base: value for base, value in bases.items() if value}
            if len(known) < len(bases):
                continue
            try:
                inputs = _gather(run, spec, False, known).inputs
            except (PaiTasksError, OSError):
                continue
            with self._lock:
                self._expected[name] = fingerprint(inputs)
        self._ask([*names, *(user for name in names for user in self._built_on(name))])

    def _ask(self, names: Sequence[str]) -> list[str]:
        remote = self.run.remote
        assert remote is not None
        asked: list[str] = []
        built: list[str] = []  # whose fingerprint tag is asked
        for name in names:
            found = self._expect(name)
            local = self.run.images.get(name) if found is not None else None
            if (found is None or (local is not None and local.labels.get(LABEL) == found)
                    or remote.tagged(name, found)):
                continue  # unknown yet, or the engine holds it, or `:tag` does: no question
            asked.append(remote.by_fingerprint(name, found))
            built.append(name)
        remote.prefetch(asked)
        pool = self._bringing
        if pool is not None:  # after `prefetch`: they wait for its answers
            with contextlib.suppress(RuntimeError):  # the run just ended (`finish`)
                for name, reference in zip(built, asked, strict=True):
                    pool.submit(self._bring_bases, name, reference)
        return asked

    def _bring_bases(self, name: str, reference: str) -> None:
        """Once the registry answered `reference` (`name`'s fingerprint tag) with nothing:
        bring `name`'s tree bases the registry holds into the engine, for its build."""
        run, remote = self.run, self.run.remote
        assert remote is not None
        try:
            if remote.answer(reference) != (True, None):
                return  # the registry holds it, or could not say
            for base in self.specs[name].uses:  # as builds.base_references takes them
                found = self._known(base)
                # Not a question of its own: the base's check asks, if need be.
                digest = remote.find(base, found, ask=False) if found else None
                local = run.images.get(base)
                if digest is not None and not (
                    local is not None and digest in published_digests(run, base, local)
                ):
                    bring(run, base, digest)
        except Exception:  # the build brings what it needs itself, and says what fails
            return

    def finish(self) -> None:
        """The run is over: wait for a base being brought, bring no more."""
        pool, self._bringing = self._bringing, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _expect(self, name: str) -> str | None:
        """`name`'s fingerprint if it can be known now: checked already, or computed
        from inputs known before the hooks run (depth first, without recursion)."""
        run = self.run
        stack, failed = [name], set()
        while stack:
            current = stack[-1]
            known = self._known(current)
            spec = self.specs.get(current)
            if known is not None or spec is None or spec.predicted or current in failed:
                if known is None:
                    failed.add(current)
                stack.pop()
                continue
            bases = {base: self._known(base) for base in spec.uses}
            pending = [base for base, value in bases.items() if value is None]
            if any(base in failed for base in pending):
                failed.add(current)
                stack.pop()
            elif pending:
                stack.extend(pending)
            else:
                try:
                    inputs = _gather(run, spec, True, {k: v for k, v in bases.items() if v}).inputs
                except (PaiTasksError, OSError):
                    failed.add(current)
                else:
                    with self._lock:
                        self._expected[current] = fingerprint(inputs)
                stack.pop()
        return self._known(name)

    def _known(self, name: str) -> str | None:
        """`name`'s fingerprint: as a check found it, else as computed ahead."""
        return self.run.findings.fingerprint(name) or self._expected.get(name)

    def _built_on(self, name: str) -> list[str]:
        """The run's images built on `name`, directly or not."""
        if self._users is None:
            users: dict[str, list[str]] = {}
            for spec in self.specs.values():
                for base in spec.uses:
                    users.setdefault(base, []).append(spec.name)
            self._users = users
        found: dict[str, None] = {}
        stack = list(self._users.get(name, ()))
        while stack:
            current = stack.pop()
            if current not in found:
                found[current] = None
                stack.extend(self._users.get(current, ()))
        return [image for image in found if image in self._images]


def _in_order(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """`names` in `order` (bases before the images built on them: the questions a run
    waits for first are asked first), then any `order` lacks, by name."""
    wanted = set(names)
    return [name for name in order if name in wanted] + sorted(wanted - set(order))


class PushUpToDate:
    """doit uptodate check for a push: the registry's `:tag` already serves the image
    built from the current inputs; with `upload`, for `_upload:<image>`: the registry
    holds that image (under its fingerprint tag, or under `:tag`)."""

    def __init__(self, run: Run, image: str, upload: bool = False) -> None:
        self.run = run
        self.image = image
        self.upload = upload
        self.reason = "not checked"

    def __call__(self, task: Any, values: Any) -> bool:
        started = time.time()
        try:
            fresh, self.reason = pushed_already(self.run, self.image)
            if self.upload and not fresh:
                fresh, self.reason = uploaded_already(self.run, self.image)
        except PaiTasksError as exc:
            self.reason = str(exc)
            fresh = False
        if self.run.executing:
            self.run.output.note_check(task.name, started, fresh)
        return fresh

    def __repr__(self) -> str:
        return f"{'upload' if self.upload else 'push'} of {self.image}: {self.reason}"


def pushed_already(run: Run, image: str) -> tuple[bool, str]:
    """Whether `<image>:<tag>` serves the image built from the current inputs: the one
    its fingerprint tag serves, or the engine's (by its repository digests) when the
    engine's image is of the current inputs."""
    _ = run.registry_settings  # a clear error without config=
    remote = run.remote
    assert remote is not None
    wanted = run.findings.fingerprint(image)
    if wanted is None:
        return False, f"image {image} was not checked in this run"
    name = remote.by_tag(image)
    served = remote.digest(name)
    if served is None:
        return False, f"{name} is not in the registry"
    local = run.images.get(image)
    if (
        local is not None
        and local.labels.get(LABEL) == wanted
        and served in published_digests(run, image, local)
    ):
        return True, f"{name} already serves the engine's image ({served})"
    # The push checks that get here need these: ask for them all at once.
    remote.prefetch(
        remote.by_fingerprint(name, found)
        for name, found in run.findings.fingerprints().items()
        if not remote.tagged(name, found)
    )
    canonical = remote.find(image, wanted)
    if canonical is None:
        return False, "the registry holds no image built from the current inputs"
    if served != canonical:
        return False, f"{name} serves another build ({served})"
    return True, f"{name} already serves {served}"


def uploaded_already(run: Run, image: str) -> tuple[bool, str]:
    """Whether the registry holds the image built from the current inputs under its
    fingerprint tag."""
    remote = run.remote
    assert remote is not None
    wanted = run.findings.fingerprint(image)
    if wanted is None:
        return False, f"image {image} was not checked in this run"
    reference = remote.by_fingerprint(image, wanted)
    found = remote.digest(reference)
    if found is None:
        return False, f"{reference} is not in the registry"
    return True, f"{reference.rpartition(':')[0]}@{found} is in the registry"
