"""deploy/docker/Dockerfile, built and run with real Docker (issue 20).

A dockerd of the test's own (tests/docker_harness.py: Debian's docker.io, its own data
and exec roots, no bridge, ``--network host`` for everything, a base image made here by
mmdebstrap) builds the documented Dockerfile twice for the same two-member workspace:
once plain (no freshd cache keys: freshd steps aside, uv decides by timestamps) and
once with ``FRESHD_DIGEST_*`` keys. uv issue 9191 then shows in the plain image after
each way an image is carried on — the multi-stage ``COPY --from`` itself, ``docker
save``/``rmi``/``builder prune``/``load``, a ``RUN chmod -R a+rX /app`` layer, a
build-time ``uv run`` smoke test: started with ``UV_OFFLINE=1`` it exits 1 (it must
rebuild, and hatchling is not at hand). The freshd image starts offline without
building anything, rebuilds a member whose source a later layer edits, and behaves as
the plain one for a dependency group and for ``--locked`` with a stale lock.

``.ci/run`` installs docker.io and mmdebstrap; without them (or without root) the
module is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("docker_harness")
from docker_harness import (  # noqa: E402
    BUILD_TIMEOUT_S,
    Engine,
    Result,
    base_image,
    docker_missing,
    write_workspace,
)

REPO = Path(__file__).parents[1]
UV = Path(sys.executable).parent / "uv"
START = ("uv", "run", "-v", "--locked", "--no-dev", "python", "-m", "app")
OFFLINE = {"UV_OFFLINE": "1"}
BUILT = ("Building ", "Built ", "not fresh", "Uninstalled ")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

_missing = docker_missing()
if _missing is not None and not os.environ.get("CI"):
    pytestmark.append(pytest.mark.skip(reason=f"no Docker here: {_missing}"))


class Images:
    """The engine, and the tags of the two images built from the documented Dockerfile."""

    def __init__(self, engine: Engine, base: str, contexts: dict[str, Path]) -> None:
        self.engine, self.base, self.contexts = engine, base, contexts

    def derive(self, image: str, tag: str, *lines: str) -> str:
        """An image made from ``image`` by a Dockerfile of ``lines``: a later layer."""
        context = self.contexts[image].parent / f"derived-{tag}"
        context.mkdir()
        (context / "Dockerfile").write_text("\n".join((f"FROM {image}", *lines)) + "\n")
        self.engine.build(context, tag)
        return tag


def activity(result: Result) -> list[str]:
    """The lines of ``uv -v`` output that show a rebuild or a reinstall."""
    return [line for line in result.stderr.splitlines() if any(w in line for w in BUILT)]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    if _missing is not None:
        pytest.fail(f"CI must run the Docker test: {_missing}")
    work = tmp_path_factory.mktemp("docker")
    wheels = work / "wheels"
    subprocess.run(
        [UV, "build", "--wheel", "-o", wheels, REPO],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    [wheel] = wheels.glob("freshd-*.whl")
    engine = Engine()
    try:
        engine.start()
        base = base_image(engine, work)
        contexts: dict[str, Path] = {}
        for tag, keys in (("app-plain", False), ("app-freshd", True)):
            context = work / tag / "context"
            context.mkdir(parents=True)
            write_workspace(context, wheel, keys=keys)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "FRESHD_"))}
            subprocess.run(
                [UV, "lock"], cwd=context, env={**env, "UV_NO_CONFIG": "1"},
                check=True, capture_output=True, timeout=BUILD_TIMEOUT_S,
            )  # fmt: skip
            engine.build(context, tag, "--build-arg", f"BASE_IMAGE={base}")
            contexts[tag] = context
        yield Images(engine, base, contexts)
    finally:
        engine.stop()
        assert engine.processes() == [], "processes left behind"
        assert engine.mounts() == [], "mounts left behind"


def carried(images: Images, image: str, how: str) -> str:
    """``image`` after it was carried on ``how``: the tag to run."""
    if how == "copy-from":  # the Dockerfile's own runtime stage
        return image
    if how == "save-load":  # what a push and a pull do
        archive = images.contexts[image].parent / "image.tar"
        images.engine.docker("save", "-o", archive, image)
        images.engine.docker("rmi", image)
        images.engine.docker("builder", "prune", "-af")
        images.engine.docker("load", "-i", archive)
        archive.unlink()
        return image
    if how == "chmod":
        return images.derive(image, f"{image}-chmod", "RUN chmod -R a+rX /app")
    assert how == "smoke"  # a build-time smoke test, uv's cache in a cache mount as usual
    return images.derive(
        image,
        f"{image}-smoke",
        "RUN --mount=type=cache,target=/root/.cache/uv "
        "freshd run -- uv run --locked --no-dev python -m app",
    )


CARRIED = pytest.mark.parametrize("how", ["copy-from", "save-load", "chmod", "smoke"])


@CARRIED
def test_the_plain_image_cannot_start_offline(images: Images, how: str) -> None:
    """uv issue 9191: after the layer, plain uv finds its local packages not fresh."""
    ran = images.engine.run(carried(images, "app-plain", how), *START, env=OFFLINE)
    assert ran.code == 1, ran
    assert "not fresh" in ran.stderr and "hatchling" in ran.stderr, ran


@CARRIED
def test_the_freshd_image_starts_offline_building_nothing(images: Images, how: str) -> None:
    ran = images.engine.run(carried(images, "app-freshd", how), *START, env=OFFLINE)
    assert ran.code == 0, ran
    assert ran.stdout == "app runs lib one\n"
    assert activity(ran) == [], ran


def test_a_source_edit_in_a_later_layer_is_rebuilt_and_runs(images: Images) -> None:
    edited = images.derive(
        "app-freshd",
        "app-freshd-edited",
        """RUN echo "VALUE = 'two'" > /app/libs/lib/src/lib/__init__.py""",
    )
    ran = images.engine.run(edited, *START)
    assert ran.code == 0, ran
    assert ran.stdout == "app runs lib two\n"
    built = activity(ran)
    assert any("Built lib" in line for line in built), ran
    assert not any("Built app" in line or "fresh: app" in line for line in built), ran


def test_a_dependency_group_is_installed_as_plain_uv_installs_it(images: Images) -> None:
    argv = ("uv", "run", "-v", "--locked", "--group", "dev", "python", "-c", "import iniconfig")
    plain = images.engine.run("app-plain", *argv)
    ran = images.engine.run("app-freshd", *argv)
    assert (plain.code, ran.code) == (0, 0), (plain, ran)
    assert any("iniconfig" in line for line in ran.stderr.splitlines() if "+ " in line), ran
    assert not any("Built" in line or "not fresh" in line for line in activity(ran)), ran


def test_locked_with_a_stale_lock_fails_as_plain_uv_fails(images: Images) -> None:
    change = (
        """RUN sed -i 's/^dependencies = \\[\\]/dependencies = ["iniconfig"]/' """
        "/app/libs/lib/pyproject.toml"
    )
    outcomes = []
    for image in ("app-plain", "app-freshd"):
        changed = images.derive(image, f"{image}-unlocked", change)
        ran = images.engine.run(changed, "uv", "run", "--locked", "python", "-m", "app")
        outcomes.append((ran.code, ran.stderr[ran.stderr.find("error:") :]))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 2 or outcomes[0][0] == 1
    assert "needs to be updated" in outcomes[0][1]
