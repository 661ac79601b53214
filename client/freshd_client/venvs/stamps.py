"""Freshness stamps: what each local install of a venv was built from, kept inside the venv.

``freshd stamp`` writes ``VENV/.freshd/stamps.json`` (one record a local install:
source path, scope, digest, and the identity of the install itself) and one manifest a
package under ``VENV/.freshd/manifests/`` (its entries, to name what changed later).
The records travel with the venv into an image layer; ``freshd check`` and
``freshd run`` compare them with the content at the source paths now.

The invariant is freshd's: a package is reported fresh only when the content at its
source path has the stamped digest *and* the stamp belongs to the install that is in
the venv now (a reinstall since stamping makes it unknown, not fresh). A stamp is
written only for content that was not changed after the package was installed.
The formats are documented in docs/uv.md.
"""

from __future__ import annotations

import os

from freshd_client.errors import FreshdError, VenvError
from freshd_client.venvs import quick
from freshd_client.venvs.venv import STAMP_DIR as STAMP_DIR
from freshd_client.venvs.venv import STAMP_FILE as STAMP_FILE
from freshd_client.venvs.venv import LocalInstall, freshd_file, local_installs, read_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from freshd_client.content.scan import ScanResult
    from freshd_client.spec.digest import Scope

MANIFESTS = "manifests"
STAMP_FORMAT = 2  # 2: digests of format 2 (b3t2/b3m2, issue 19); older stamps are refused
_LINKED_KINDS = ("f", "x", "l")  # entries whose files a ctime can be read from


class Verdict:
    """The answer for one local install: ``fresh``, ``stale``, ``unknown`` or ``error``."""

    __slots__ = ("by", "changes", "editable", "name", "reason", "scope", "source", "state")

    def __init__(self, install: LocalInstall, state: str, reason: str = "", by: str = "") -> None:
        self.name = install.name
        self.source = install.source
        self.editable = install.editable
        self.scope: Scope = install.scope
        self.state = state
        self.reason = reason
        self.by = by  # who computed the answer: "daemon" or "one-shot"
        self.changes: list[str] = []

    @classmethod
    def held(cls, name: str, source: str, editable: bool) -> Verdict:
        """A fresh verdict from the whole-venv fast path (``quick``)."""
        return cls(LocalInstall(name, "", source, editable, ""), "fresh", by="stat cache")

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


# -- stamping -------------------------------------------------------------------------


def stamp(
    venv: str,
    *,
    names: Iterable[str] | None = None,
    force: bool = False,
    expect: dict[str, str | None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Stamp the local installs of ``venv`` (only ``names`` when given; the others keep
    their stamps). Returns (written records, problems); a package with a problem gets
    no stamp, so it reads unknown until it is stamped.

    A package is not stamped, unless ``force``, when the stamp would vouch for content
    the install may not have been built from: a source file differs from the installed
    copy that RECORD lists (an installer may reuse a wheel it built before an edit, as
    uv does when no cache key changed), or a file of the package changed after the
    install (its ctime is later than the install's ``direct_url.json``). With ``expect``
    (name to the digest seen before a reinstall), a package whose content differs from
    it is not stamped either: it changed while the installer was building it.
    """
    from freshd_client.content.scan import package_dir, scan

    wanted = set(names) if names is not None else None
    # a partial stamp keeps the others' stamps and the lock record: a lock that moved
    # was not synced by reinstalling a few local packages
    kept = _document(venv) if wanted is not None else None
    stamps = dict(kept["packages"]) if kept is not None else {}
    written: list[dict[str, Any]] = []
    problems: list[str] = []
    manifests: dict[str, dict[str, Any]] = {}
    for install in local_installs(venv):
        if wanted is not None and install.name not in wanted:
            continue
        stamps.pop(install.name, None)
        try:
            result = scan(package_dir(install.source), scopes=(install.scope,))
        except FreshdError as exc:
            problems.append(f"{install.name}: {exc}")
            continue
        if result.error is not None:
            problems.append(f"{install.name}: {result.error}")
            continue
        entries = _entries(result, install.scope)
        differ = [] if force else _installed_files_differ(install, result)
        late = [] if force or differ else _changed_after_install(install, result, entries)
        if differ or late:
            shown = _first(differ or late)
            what = "differs from the installed copy" if differ else "changed after it was installed"
            problems.append(
                f"{install.name}: {shown} {what}; reinstall it, then stamp again "
                "(or stamp with --force if the install matches)"
            )
            continue
        digest = result.tree if install.scope == "tree" else result.meta
        assert digest is not None
        if expect is not None and install.name in expect and expect[install.name] != digest:
            problems.append(f"{install.name}: changed while it was being reinstalled")
            continue
        record = {
            "name": install.name,
            "version": install.version,
            "source": install.source,
            "editable": install.editable,
            "scope": install.scope,
            "digest": digest,
            "dist_info": os.path.relpath(install.dist_info, venv),
            "install": install_identity(install),
        }
        stamps[install.name] = record
        manifests[install.name] = {
            "scope": install.scope,
            "digest": digest,
            "entries": entries,
            "project": _project_memo(result.path),
        }
        written.append(record)
    lock = _lockfile(venv) if wanted is None else (kept or {}).get("lockfile")
    _write(venv, stamps, manifests, lock)
    return written, problems


_BOOKKEEPING = frozenset(
    ("INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "uv_cache.json", "uv_build.json")
)
"""Files an installer writes into a .dist-info about the install itself (when, by whom):
they differ between two installs of the same build, so the identity leaves them out."""


def install_identity(install: LocalInstall) -> str:
    """A digest of what the install put into the venv: the RECORD lines (path, hash,
    size) of its files, without the installer's bookkeeping, and its PEP 610 record.

    Reinstalling a different build changes it; reinstalling the same build, copying
    or untarring the venv does not.
    """
    from blake3 import blake3

    dist_info = os.path.basename(install.dist_info)
    try:
        with open(os.path.join(install.dist_info, "RECORD"), "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").splitlines()
        with open(os.path.join(install.dist_info, "direct_url.json"), "rb") as f:
            direct_url = f.read()
    except OSError as exc:
        raise VenvError(f"cannot read {install.dist_info}: {exc.strerror or exc}") from None
    kept = []
    for line in lines:
        path = line.rsplit(",", 2)[0]
        head, _, tail = path.rpartition("/")
        if not (head == dist_info and tail in _BOOKKEEPING) and not tail.endswith(".pyc"):
            kept.append(line)  # .pyc files: pip compiles them anew, with timestamps
    h = blake3("\n".join(sorted(kept)).encode("utf-8", "surrogateescape"))
    h.update(b"\x00" + direct_url)
    return "b3:" + h.hexdigest()


def _entries(result: ScanResult, scope: Scope) -> list[list[str]]:
    if scope == "tree":
        return [[r.rel, r.kind.decode(), r.digest.hex()] for r in result.records]
    return [
        [os.fsdecode(e.path), e.kind.decode(), e.digest.hex()]
        for e in sorted(result.meta_entries, key=lambda e: e.path)
    ]


def _project_memo(path: str) -> dict[str, Any] | None:
    """The project rules of the package with the digest of the bytes they were parsed
    from (``project.load_project``): a check on a copy of the same files skips TOML."""
    from freshd_client.content.project import load_project

    try:
        return load_project(path)[1]
    except FreshdError:
        return None  # the scan already read it; a check then parses it itself


def _first(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _installed_files_differ(install: LocalInstall, result: ScanResult) -> list[str]:
    """Source files whose content differs from their installed copy (regular installs).

    RECORD names each installed file with its sha256. An installed ``pkg/mod.py`` is
    the source file at the same relative path, or under ``src/``, or else the only
    source file ending in that path; installed files with no source counterpart
    (generated, compiled) are not compared.
    """
    if install.editable or not result.records:
        return []
    import base64
    import hashlib

    by_suffix: dict[str, list[str]] = {}
    for record in result.records:
        if record.kind != b"l":
            by_suffix.setdefault(record.rel.rpartition("/")[2], []).append(record.rel)
    try:
        with open(os.path.join(install.dist_info, "RECORD"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return []  # no RECORD to compare with: the identity check reports it
    differ: list[str] = []
    for line in lines:
        path, _, rest = line.partition(",")
        algorithm, _, expected = rest.partition(",")[0].partition("=")
        if algorithm != "sha256" or path.startswith(("..", "/")) or ".dist-info/" in path:
            continue
        candidates = [
            rel
            for rel in by_suffix.get(path.rpartition("/")[2], ())
            if rel == path or rel.endswith("/" + path)
        ]
        preferred = [rel for rel in candidates if rel in (path, "src/" + path)]
        chosen = preferred or (candidates if len(candidates) == 1 else [])
        if not chosen:
            continue
        source = os.path.join(result.path, chosen[0])
        try:
            with open(source, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
        except OSError:
            continue  # gone since the scan: the digest no longer matches anyway
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != expected:
            differ.append(chosen[0])
    return differ


def _changed_after_install(
    install: LocalInstall, result: ScanResult, entries: list[list[str]]
) -> list[str]:
    try:
        installed_at = os.stat(os.path.join(install.dist_info, "direct_url.json")).st_ctime_ns
    except OSError as exc:
        raise VenvError(f"cannot read {install.dist_info}: {exc.strerror}") from None
    ctimes = {r.rel: r.ctime_ns for r in result.records}
    late: list[str] = []
    for rel, kind, _digest in entries:
        if kind not in _LINKED_KINDS:
            continue  # a directory's existence or git state: no content to date
        ctime = ctimes.get(rel)
        if ctime is None:
            try:
                ctime = os.lstat(os.path.join(result.path, rel)).st_ctime_ns
            except OSError:
                continue  # gone since the scan: the digest no longer matches anyway
        if ctime > installed_at:
            late.append(rel)
    return late


def _write(
    venv: str,
    stamps: dict[str, dict[str, Any]],
    manifests: dict[str, Any],
    lock: dict[str, str] | None,
) -> None:
    """Write the manifests, then the stamps file, each atomically (temp file + rename):
    a full disk or a crash leaves the previous stamps whole."""
    directory = os.path.join(venv, STAMP_DIR)
    try:
        os.makedirs(os.path.join(directory, MANIFESTS), exist_ok=True)
        for name, manifest in manifests.items():
            _atomic_json(os.path.join(directory, MANIFESTS, name + ".json"), manifest)
        body = {
            "format": STAMP_FORMAT,
            "packages": sorted(stamps.values(), key=_by_name),
            "lockfile": lock,
        }
        _atomic_json(os.path.join(directory, STAMP_FILE), body)
    except OSError as exc:
        raise VenvError(f"cannot write stamps in {directory}: {exc.strerror or exc}") from None


def lock_path(venv: str) -> str:
    """Where uv keeps the lock of the project whose venv ``venv`` is: beside it."""
    return _lockfile_path(venv)


def _lockfile_path(venv: str) -> str:
    return os.path.join(os.path.dirname(venv), "uv.lock")


def _lockfile(venv: str) -> dict[str, str] | None:
    """The project's ``uv.lock`` beside the venv (uv's layout) and its digest, if any."""
    path = _lockfile_path(venv)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VenvError(f"cannot read {path}: {exc.strerror or exc}") from None
    from blake3 import blake3

    return {"path": path, "digest": "b3:" + blake3(data).hexdigest()}


def _lock_moved(venv: str, document: dict[str, Any] | None) -> str | None:
    """Why the project's ``uv.lock`` no longer matches the stamps (None when it does).

    Local packages can all be fresh while the lock moved (a pull that upgraded a
    dependency): then uv must sync, and ``freshd run`` must not set UV_NO_SYNC.
    """
    if document is None:
        return None  # no stamps: verify says so
    stamped = document["lockfile"]
    now = _lockfile(venv)
    if stamped == now:
        return None
    if stamped is not None and os.path.dirname(stamped["path"]) != os.path.dirname(venv):
        return (
            f"{venv} moved since the stamps were taken (it was beside {stamped['path']}); "
            "stamp it again where it is now"
        )
    if now is None:
        return f"{stamped['path']} was removed since the stamps were taken"
    return f"{now['path']} changed since the stamps were taken"


def _by_name(record: dict[str, Any]) -> str:
    return str(record["name"])


def _atomic_json(path: str, value: object) -> None:
    import json

    from freshd_client.content.smallfile import write_atomic

    raw = json.dumps(value, indent=1, sort_keys=True) + "\n"
    write_atomic(path, raw.encode("utf-8"), durable=True)


def read_stamps(venv: str) -> dict[str, dict[str, Any]] | None:
    """The stamps of ``venv`` by package name; None when it was never stamped."""
    document = _document(venv)
    return document["packages"] if document is not None else None


def _document(venv: str) -> dict[str, Any] | None:
    """``stamps.json``, validated: ``packages`` by name and the ``lockfile`` record (or
    None). None when the venv was never stamped; VenvError, one line, when unreadable."""
    path = freshd_file(venv, STAMP_FILE)
    data = read_json(path, "stamps (stamp again)")
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("format") != STAMP_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise VenvError(
            f"{path}: stamps format {found!r}, this freshd reads {STAMP_FORMAT}; stamp again"
        )
    packages = data.get("packages")
    if not isinstance(packages, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) for p in packages
    ):
        raise VenvError(f"{path}: unreadable stamps (no package list); stamp again")
    lock = data.get("lockfile")
    if lock is not None and not (
        isinstance(lock, dict)
        and isinstance(lock.get("path"), str)
        and isinstance(lock.get("digest"), str)
    ):
        raise VenvError(f"{path}: unreadable stamps (a malformed lockfile record); stamp again")
    return {
        "packages": {p["name"]: p for p in packages},
        "lockfile": {"path": lock["path"], "digest": lock["digest"]} if lock else None,
    }


# -- checking -------------------------------------------------------------------------


def verify(
    venv: str, *, sync: bool = False, daemon: bool = True
) -> tuple[list[Verdict], str | None]:
    """Compare the stamps of ``venv`` with the content now: one Verdict a local install,
    and why the project's ``uv.lock`` moved since the stamps (None if it did not).

    The stat cache answers what it can; a running daemon answers from its index
    (``sync``: after every change made before the call); the rest is computed one-shot.
    A stale package's Verdict names the files that differ from the stamped manifest.
    """
    held = quick.load(venv)
    if held is not None:
        return [Verdict.held(name, source, editable) for name, source, editable in held], None
    import time

    started = time.time_ns()
    inputs = quick.inputs(venv, _lockfile_path(venv))  # before anything is read
    document = _document(venv)
    stamps = document["packages"] if document is not None else None
    installs = local_installs(venv)
    if stamps is None and not installs:
        raise VenvError(f"{venv}: no stamps and no local installs (run: freshd stamp)")
    from freshd_client.venvs import verified

    verdicts: list[Verdict] = []
    asked: list[tuple[Verdict, dict[str, Any]]] = []
    cache = verified.load(venv) if stamps else {}
    for install in installs:
        record = (stamps or {}).get(install.name)
        if record is None:
            why = "not stamped" if stamps is not None else "this venv has no stamps"
            verdicts.append(Verdict(install, "unknown", f"{why} (run: freshd stamp)"))
        elif (
            record.get("source") != install.source
            or record.get("scope") != install.scope
            or record.get("install") != install_identity(install)
        ):
            verdicts.append(
                Verdict(install, "unknown", "reinstalled since it was stamped (run: freshd stamp)")
            )
        elif verified.still_fresh(
            cache.get(install.name), install.source, record["digest"], record["install"]
        ):
            verdicts.append(Verdict(install, "fresh", by="stat cache"))
        else:
            verdict = Verdict(install, "unknown")
            verdicts.append(verdict)
            asked.append((verdict, record))
    answers = _ask_daemon(asked, sync) if daemon and asked else [None] * len(asked)
    learned: dict[str, dict[str, Any] | None] = {}
    for (verdict, record), answer in zip(asked, answers, strict=True):
        result = None
        if answer is not None:
            verdict.state, verdict.by = ("fresh" if answer else "stale"), "daemon"
        else:
            learned[verdict.name], result = _one_shot(venv, verdict, record)
        if verdict.state == "stale":
            verdict.changes = _changes(venv, verdict, record, result)
            if not verdict.reason:
                verdict.reason = _summary(verdict.changes)
    if learned:
        verified.save(venv, learned)
    moved = _lock_moved(venv, document)
    rests_on = _rests_on(verdicts, cache, learned) if moved is None else None
    if rests_on is not None:
        held = [(v.name, v.source, v.editable) for v in verdicts]
        quick.save(venv, started, [*inputs, *rests_on], held)
    else:
        quick.forget(venv)
    return verdicts, moved


def _rests_on(
    verdicts: list[Verdict], cache: dict[str, Any], learned: dict[str, dict[str, Any] | None]
) -> list[tuple[str, list[int] | None]] | None:
    """When every verdict is fresh and rests on a stat-cache entry: the paths those
    entries rest on, with their identities; else None."""
    paths: list[tuple[str, list[int] | None]] = []
    for v in verdicts:
        entry = learned.get(v.name) if v.name in learned else cache.get(v.name)
        if v.state != "fresh" or v.by not in ("stat cache", "one-shot") or entry is None:
            return None
        paths += [(os.path.join(v.source, rel), ident) for rel, ident in entry["paths"]]
    return paths or None


def _ask_daemon(asked: list[tuple[Verdict, dict[str, Any]]], sync: bool) -> list[bool | None]:
    """The daemon's answers, or None for each where no daemon can give one."""
    if not daemon_may_run():
        return [None] * len(asked)
    from freshd_client.transport.client import Client

    items = [(str(record["source"]), str(record["digest"])) for _v, record in asked]
    try:
        with Client() as client:
            return client.check_many(items, consistency="sync" if sync else "fast")
    except (FreshdError, ValueError):
        return [None] * len(asked)  # no usable daemon: every package is hashed here


def daemon_may_run() -> bool:
    """Whether a daemon's socket exists (a running daemon always has one). Without it
    the client's LMDB and HTTP modules are not even loaded; and an index whose daemon is
    gone would answer unknown anyway."""
    from freshd_client.transport import locations

    return os.path.exists(locations.socket_path())


def _one_shot(
    venv: str, verdict: Verdict, record: dict[str, Any]
) -> tuple[dict[str, Any] | None, ScanResult | None]:
    """Hash the package here: its stat-cache entry when it is fresh (else None), and the
    scan (which names the changes when it is stale)."""
    from freshd_client.content.project import load_project
    from freshd_client.content.scan import package_dir, scan
    from freshd_client.venvs import verified

    verdict.by = "one-shot"
    dirs: list[tuple[str, os.stat_result]] | None = None
    snapshot = None
    manifest = _manifest(venv, verdict.name, record)
    memo = manifest.get("project") if manifest is not None else None
    try:
        path = package_dir(verdict.source)
        members = None
        if verdict.scope == "tree":
            dirs = []
            project = load_project(path, memo)[0]
            members = _members(manifest)
        else:
            snapshot, project = verified.meta_snapshot(path, memo)
        result = scan(path, scopes=(verdict.scope,), dirs=dirs, project=project, members=members)
    except FreshdError as exc:
        verdict.state, verdict.reason = "error", str(exc)
        return None, None
    if result.error is not None:
        verdict.state, verdict.reason = "error", result.error
        return None, None
    digest = result.tree if verdict.scope == "tree" else result.meta
    if digest is None or digest != record.get("digest"):
        verdict.state = "stale"
        return None, result
    verdict.state = "fresh"
    entry = verified.entry_for(result, digest, record["install"], dirs=dirs, snapshot=snapshot)
    return entry, result


def _changes(
    venv: str, verdict: Verdict, record: dict[str, Any], result: ScanResult | None
) -> list[str]:
    """What differs between the stamped manifest and the content now (``result``, or a
    scan made here when the daemon answered), one line a file."""
    from freshd_client.content.scan import package_dir, scan

    manifest = _manifest(venv, verdict.name, record)
    if manifest is None:
        return []
    try:
        before = {rel: (kind, digest) for rel, kind, digest in manifest["entries"]}
        if result is None:
            result = scan(package_dir(verdict.source), scopes=(verdict.scope,))
    except (OSError, ValueError, KeyError, TypeError, FreshdError):
        return []
    if result.error is not None:
        return []
    now = {rel: (kind, digest) for rel, kind, digest in _entries(result, verdict.scope)}
    lines = [f"added {rel}" for rel in sorted(now.keys() - before.keys())]
    lines += [f"removed {rel}" for rel in sorted(before.keys() - now.keys())]
    for rel in sorted(now.keys() & before.keys()):
        if now[rel] != before[rel]:
            what = "mode" if now[rel][1] == before[rel][1] else "content"
            lines.append(f"changed {rel} ({what})")
    return lines


def _manifest(venv: str, name: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest written with the stamp ``record``; None when there is none, it is
    unreadable, or it belongs to another stamp (it only ever narrows what is said)."""
    import json

    path = os.path.join(venv, STAMP_DIR, MANIFESTS, name + ".json")
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("digest") != record.get("digest"):
        return None
    return manifest


def _members(manifest: dict[str, Any] | None) -> dict[str, bytes] | None:
    """A tree manifest's file set, with the raw digest of each regular file (b"" for a
    symlink): the walk keeps these members while the rule files hold the same bytes."""
    if manifest is None or manifest.get("scope") != "tree":
        return None
    try:
        return {
            rel: bytes.fromhex(digest) if kind in ("f", "x") else b""
            for rel, kind, digest in manifest["entries"]
        }
    except (KeyError, TypeError, ValueError):
        return None


def _summary(changes: list[str]) -> str:
    if not changes:
        return "content differs from the stamp"
    shown = "; ".join(changes[:3])
    return shown + (f"; {len(changes) - 3} more" if len(changes) > 3 else "")


def exit_code(verdicts: list[Verdict]) -> int:
    """0 all fresh, 1 some stale, 2 some unknown or error (and none stale)."""
    states = {v.state for v in verdicts}
    if "stale" in states:
        return 1
    return 2 if states - {"fresh"} else 0
