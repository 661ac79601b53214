"""A private Docker engine for tests/test_docker.py, and the workspace it builds.

``Engine`` starts Debian's ``dockerd`` (``/usr/sbin/dockerd``, client ``/usr/bin/docker``)
with its own data and exec roots under a temporary directory, no bridge, no iptables
rules and no networks of its own: every build and run uses ``--network host``. Nothing
is pulled from a registry: ``base_image`` makes Debian bookworm with python3 by
``mmdebstrap`` from the host's apt sources, imports it, and adds the host's CA
certificates (``SSL_CERT_FILE``/``PIP_CERT``) so pip and uv inside reach the package
index as the host does. ``Engine.stop`` stops the daemon (and the containerd it
started), then unmounts anything it left under its directory.

``write_workspace`` lays out the two-member uv workspace of deploy/docker/Dockerfile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
MMDEBSTRAP = "/usr/bin/mmdebstrap"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
START_DEADLINE_S = 60
STOP_DEADLINE_S = 60
BUILD_TIMEOUT_S = 600
RUN_TIMEOUT_S = 300
BASE_TAG = "freshd-test-base:bookworm"


def docker_missing() -> str | None:
    """Why Docker cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for tool in (DOCKER, DOCKERD, MMDEBSTRAP):
        if not os.path.exists(tool):
            return f"{tool} is not installed (apt-get install docker.io mmdebstrap)"
    return None


class Engine:
    """A dockerd of the test's own; ``docker(...)`` runs Debian's client against it."""

    def __init__(self) -> None:
        # short: containerd's sockets live under the exec root (108-byte socket paths)
        self.root = Path(tempfile.mkdtemp(prefix="fd-dk-"))
        self.socket = self.root / "docker.sock"
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            DOCKERD,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host=unix://{self.socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.tail()}")
            if self.docker("version", check=False, timeout=10).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"dockerd not ready in {START_DEADLINE_S} s:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def docker(
        self,
        *args: str | Path,
        check: bool = True,
        timeout: float = RUN_TIMEOUT_S,
        stdin: int | None = subprocess.DEVNULL,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "DOCKER_BUILDKIT": "1", **env}
        full_env.pop("DOCKER_HOST", None)
        full_env.pop("DOCKER_CONTEXT", None)
        proc = subprocess.run(
            [DOCKER, f"--host=unix://{self.socket}", *(str(a) for a in args)],
            env=full_env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(str(a) for a in args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
            )
        return proc

    def build(self, context: Path, tag: str, *args: str) -> None:
        self.docker(
            "build", "--network", "host", "--progress", "plain", "-t", tag, *args, context,
            timeout=BUILD_TIMEOUT_S,
        )  # fmt: skip

    def run(self, image: str, *args: str, env: dict[str, str] | None = None) -> Result:
        options = [f"--env={k}={v}" for k, v in (env or {}).items()]
        proc = self.docker("run", "--rm", "--network", "host", *options, image, *args, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def stop(self) -> None:
        """Stop dockerd (it stops its containerd), then remove what is left: no daemon,
        no mount under the engine's directory."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_DEADLINE_S)
        with contextlib.suppress(ProcessLookupError):
            if self.proc is not None:
                os.killpg(self.proc.pid, signal.SIGKILL)  # a straggler of its session
        deadline = time.monotonic() + STOP_DEADLINE_S
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)  # containerd and its shims exit after dockerd
        for line in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.partition(":")[0]), signal.SIGKILL)
        for mount in reversed(self.mounts()):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def processes(self) -> list[str]:
        """Command lines of the processes that name the engine's directory (dockerd,
        its containerd and shims)."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile
            if str(self.root) in argv:
                found.append(f"{pid}: {argv}")
        return found

    def mounts(self) -> list[str]:
        """Mount points under the engine's directory, from /proc/self/mountinfo."""
        prefix = str(self.root) + "/"
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix) or point == str(self.root):
                    found.append(point)
        return found


class Result:
    """A container's exit code and output."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-4000:]}"


def base_image(engine: Engine, work: Path) -> str:
    """Debian bookworm with python3, python3-venv and ca-certificates, made here by
    mmdebstrap from the host's apt sources, with the host's CA certificates added."""
    rootfs = work / "bookworm.tar"
    sources = [str(p) for p in Path("/etc/apt/sources.list.d").glob("*.sources")]
    if os.path.exists("/etc/apt/sources.list") and os.path.getsize("/etc/apt/sources.list"):
        sources.append("/etc/apt/sources.list")
    subprocess.run(
        [
            MMDEBSTRAP, "--variant=apt", "--include=python3,python3-venv,ca-certificates",
            "--format=tar", "bookworm", str(rootfs), *sources,
        ],
        check=True, capture_output=True, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    with open(rootfs, "rb") as f:
        engine.docker("import", "-", "freshd-test-rootfs:bookworm", stdin=f.fileno())
    rootfs.unlink()
    context = work / "base"
    context.mkdir()
    shutil.copyfile(HOST_CA, context / "host-ca.crt")
    (context / "Dockerfile").write_text(
        "FROM freshd-test-rootfs:bookworm\n"
        "COPY host-ca.crt /etc/ssl/host-ca.crt\n"
        "ENV SSL_CERT_FILE=/etc/ssl/host-ca.crt PIP_CERT=/etc/ssl/host-ca.crt\n"
    )
    engine.build(context, BASE_TAG)
    return BASE_TAG


ROOT_PYPROJECT = """\
[project]
name = "app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["lib"]

[dependency-groups]
dev = ["iniconfig"]

[tool.uv.workspace]
members = ["libs/*"]

[tool.uv.sources]
lib = {{ workspace = true, editable = false }}
{keys}
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

LIB_PYPROJECT = """\
[project]
name = "lib"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = []
{keys}
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

APP_MAIN = "import lib\n\nprint('app runs lib', lib.VALUE)\n"


def write_workspace(root: Path, wheel: Path, *, keys: bool) -> None:
    """The build context: a workspace root ``app`` (editable, as uv installs it) and its
    member ``libs/lib`` (regular, ``editable = false``), with freshd's cache keys when
    ``keys``, freshd's wheel in ``freshd-wheels/`` and the Dockerfile of deploy/."""

    def key(name: str) -> str:
        return f'\n[tool.uv]\ncache-keys = [{{ env = "FRESHD_DIGEST_{name}" }}]\n' if keys else ""

    (root / "src" / "app").mkdir(parents=True)
    (root / "src" / "app" / "__init__.py").write_text("")
    (root / "src" / "app" / "__main__.py").write_text(APP_MAIN)
    (root / "pyproject.toml").write_text(ROOT_PYPROJECT.format(keys=key("APP")))
    lib = root / "libs" / "lib"
    (lib / "src" / "lib").mkdir(parents=True)
    (lib / "src" / "lib" / "__init__.py").write_text("VALUE = 'one'\n")
    (lib / "pyproject.toml").write_text(LIB_PYPROJECT.format(keys=key("LIB")))
    (root / "freshd-wheels").mkdir()
    shutil.copy(wheel, root / "freshd-wheels")
    dockerfile = Path(__file__).parents[1] / "deploy" / "docker" / "Dockerfile"
    shutil.copy(dockerfile, root / "Dockerfile")
