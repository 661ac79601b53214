"""The ``freshd`` command line.

One argparse parser; ``main`` builds only the sub-parser of the verb it is given (each
costs ~1 ms of gettext look-ups), and every verb imports what it needs only when it
runs. Only this module prints and chooses exit codes, in one place (``_failure``):

- 0: success;
- 1: an error (one line, ``Error: …``; ``freshd check``: some package is stale);
- 2: a usage error (one line with the help to read), or no answer: no daemon answers
  a verb that needs one, ``freshd check`` cannot tell some package's freshness;
- 126, 127: ``freshd run`` cannot run CMD / does not find it (otherwise CMD's own code);
- 130: interrupted (Ctrl-C).

With ``--json`` an error is the JSON object ``{"error": {"code", "message"}}`` on stdout,
in place of the answer, and nothing on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

from freshd import __version__
from freshd.errors import UsageError
from freshd_client.errors import FreshdError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms at start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    from freshd_client.http import HttpTransport

DAEMON_MODULES = frozenset(
    ("fastapi", "starlette", "pydantic", "uvicorn", "watchdog", "prometheus_client", "rich")
)
"""What only the daemon's verbs import: the ``daemon`` extra (pyproject.toml)."""
VERBS = (
    "digest",
    "index",
    "serve",
    "status",
    "ls",
    "add",
    "remove",
    "stamp",
    "check",
    "run",
    "completion",
    "graph",
    "affected",
    "exec",
)
JSON_VERBS = frozenset(
    ("digest", "index", "status", "ls", "add", "remove", "stamp", "check", "graph", "affected")
)
"""The verbs with ``--json``: their errors are JSON too."""

_PRINT_SOCKET = object()  # freshd status --socket, with no PATH
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 2
EXIT_STALE = 1  # freshd check: some package changed by content
EXIT_UNKNOWN = 2  # freshd check: some package's freshness cannot be told
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0    success
  1    an error, one line on stderr (Error: ...); freshd check: some package is stale
  2    a usage error (one line naming the help to read); no daemon answers a verb that
       needs one; freshd check: the freshness of some package cannot be told
  126  freshd run: CMD cannot be run (127: not found); otherwise CMD's own exit code
  130  interrupted (Ctrl-C)

errors with --json:
  the answer on stdout is replaced by {"error": {"code": CODE, "message": TEXT}}, with
  the exit code above and nothing on stderr. CODE is "usage", "no_daemon",
  "missing_extra" (the daemon's dependencies are not installed), "error", or the
  daemon's own code when it refused the request (e.g. "not_found").

logging:
  -v/-q on every verb: one level more/less verbose than the default (WARNING; INFO for
  freshd serve), repeatable; without them FRESHD_LOG_LEVEL (DEBUG, INFO, WARNING,
  ERROR) sets it. -q also drops notes and warnings that are not errors. The daemon's
  lines have timestamps, except in the journal (JOURNAL_STREAM), which keeps its own.

shell completion:
  eval "$(freshd completion bash)"   (zsh: freshd completion zsh > ~/.zfunc/_freshd)
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter (descriptions as written), given the terminal's width: without
    one, argparse imports shutil (and with it bz2, lzma, fnmatch: ~5 ms) to ask, for
    every argument added, though only help output needs it."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2  # as argparse does
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else stdout's terminal, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    stdout = sys.__stdout__
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80 if stdout else 80
    except (ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised (one line, in ``main``), not printed
    with the usage of whichever parser noticed them."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def _cmd_digest(args: argparse.Namespace) -> int:
    """Print the digest of the package at PATH, computed now, with no daemon and no index.

    Example:

        $ freshd digest libs/core
        b3t2:9f0c…
        $ freshd digest libs/core --scope meta --json
    """
    from freshd_client.oneshot import digest_path

    result = digest_path(args.path, args.scope)
    value = result.tree if args.scope == "tree" else result.meta
    for note in (*(f"skipped {s}: never opened" for s in result.skipped), *result.notes):
        _note(args, f"note: {note}")
    if args.json:
        _print_json(
            {
                "path": result.path,
                "name": result.name,
                "scope": args.scope,
                "digest": value,
                "files": len(result.records) if args.scope == "tree" else None,
                "skipped": result.skipped,
                "notes": result.notes,
            }
        )
    else:
        print(value)
    return EXIT_OK


def _cmd_index(args: argparse.Namespace) -> int:
    """Build or refresh the on-disk index of every package under the ROOTs.

    Stored hashes are reused only where size, mtime, ctime, inode and device all
    match and the file was not modified shortly before it was hashed (git's
    racy-timestamp rule); everything else is hashed again. The index remembers the
    ROOTs: a plain freshd serve on it watches them.

    Example:

        $ freshd index ~/src/monorepo --db /tmp/freshd-index
        indexed 300 packages, 60000 files (hashed 60000, reused 0, 600.0 MB) in 0.71 s
    """
    from freshd import config
    from freshd.index import Index
    from freshd.indexer import canonical_root, index_roots

    cfg = config.load(index_dir=args.db, workers=args.workers)
    roots = list(dict.fromkeys(canonical_root(r) for r in (args.roots or ["."])))
    owner = {"command": "freshd index"}
    with Index(cfg.index_dir, owner=owner) as index, _ProgressBar() as progress:
        summary = index_roots(index, roots, workers=cfg.workers, progress=progress)
    for problem in summary.errors:
        print(f"error: {problem}", file=sys.stderr)
    if args.json:
        _print_json(
            {
                "index": cfg.index_dir,
                **{k: getattr(summary, k) for k in summary.__slots__ if k != "found"},
            }
        )
    else:
        print(
            f"indexed {summary.packages} packages, {summary.files} files "
            f"(hashed {summary.hashed}, reused {summary.reused}, "
            f"{summary.hashed_bytes / 1e6:.1f} MB) in {summary.seconds:.2f} s; "
            f"removed {summary.removed}; index: {cfg.index_dir}"
        )
    return EXIT_ERROR if summary.errors else EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground: watch the ROOTs, keep the index current, serve it.

    It takes the index's writer lock, reconciles the stored index with the disk
    (rehashing only what differs), then watches every ROOT and answers on a Unix
    socket (mode 0600, in a directory that must be yours with mode 0700), to your own
    user only. SIGINT or SIGTERM stops it cleanly.

    The index remembers the roots. With no ROOT, the daemon watches the remembered
    ones (given to an earlier freshd serve, added with freshd add, or indexed with
    freshd index), else the current directory. Given ROOTs are the roots of this run
    and are remembered instead: the log names each remembered root that is dropped,
    and its packages leave the index.

    Example:

        $ freshd serve ~/src/monorepo   # watches it, and remembers it
        $ freshd serve                  # later: the remembered roots, with those added since
    """
    from freshd import config
    from freshd.daemon import serve
    from freshd.indexer import canonical_root

    cfg = config.load(
        index_dir=args.db,
        workers=args.workers,
        socket=args.socket,
        tcp=args.tcp,
        settle_ms=args.settle_ms,
        rescan_seconds=args.rescan_seconds,
        canary_seconds=args.canary_seconds,
        scrub_seconds=args.scrub_seconds,
        allow_uids=args.allow_uid,
    )
    return serve(cfg, [canonical_root(r) for r in args.roots])


def _cmd_status(args: argparse.Namespace) -> int:
    """Show the running daemon's health: state, pid, roots, packages, files, pending work.

    Each root shows how it is followed: watching, polling (it cannot be watched whole;
    rescanned periodically), blind (its watcher went quiet) or missing, with the reason
    its packages answer unknown meanwhile. "recent" lists the daemon's last warnings
    and errors. Exits with 2 when no daemon answers on the socket. --socket alone
    prints the socket's path (no daemon needed), for other tools:

        $ curl --unix-socket "$(freshd status --socket)" http://freshd/v1/health

    Example:

        $ freshd status
        degraded  pid 4242  freshd 0.1.0
        socket    /run/user/1000/freshd/freshd.sock
        index     /home/me/.local/state/freshd/index
        roots     /home/me/src/mono (watching)
                  /home/me/src/old (missing: the directory was deleted or moved away)
        packages  300 (60000 files), 0 pending
        recent    2026-12-08T09:12:03.114Z WARNING root /home/me/src/old disappeared; ...
    """
    if args.socket is _PRINT_SOCKET:
        from freshd_client import locations

        path = locations.socket_path()
        if args.json:
            _print_json({"socket": path})
        else:
            print(path)
        return EXIT_OK
    with _daemon(args) as http:
        health = http.health()
    if args.json:
        _print_json(health)
        return EXIT_OK
    progress = health.get("progress") or {}
    done = f"  {progress['done']}/{progress['total']}" if progress.get("total") else ""
    print(f"{health['status']}{done}  pid {health['pid']}  freshd {health['version']}")
    print(f"socket    {health.get('socket', '')}")
    print(f"index     {health.get('index', '')}")
    watch = health.get("watch") or {}
    reasons = health.get("reasons") or {}
    roots = [
        f"{root} ({watch[root]}{': ' + reasons[root] if root in reasons else ''})"
        if root in watch
        else root
        for root in health["roots"]
    ]
    print("roots     " + ("\n          ".join(roots) or "none (add one with: freshd add ROOT)"))
    print(f"packages  {health['packages']} ({health['files']} files), {health['pending']} pending")
    if health.get("error"):
        print(f"error     {health['error']}")
    recent = [f"{r['time']} {r['level']} {r['message']}" for r in health.get("recent") or []]
    if recent:
        print("recent    " + "\n          ".join(recent))
    return EXIT_OK


def _cmd_ls(args: argparse.Namespace) -> int:
    """List the running daemon's packages: state, name, path and the short tree digest.

    Exits with 2 when no daemon answers on the socket.

    Example:

        $ freshd ls
        STATE  NAME       PATH                        TREE
        clean  demo-core  /home/me/src/mono/libs/core b3t2:c3c34944d97b
        dirty  demo-web   /home/me/src/mono/apps/web  -
    """
    with _daemon(args) as http:
        listing = http.call("GET", "/v1/packages")
    if args.json:
        _print_json(listing)
        return EXIT_OK
    rows = [
        (p["state"], p["name"] or "-", p["path"], (p["tree"] or "-")[:17])
        for p in sorted(listing["packages"], key=lambda p: str(p["path"]))
    ]
    if not rows:
        _note(args, "no packages (add a root with: freshd add ROOT)")
        return EXIT_OK
    rows.insert(0, ("STATE", "NAME", "PATH", "TREE"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for state, name, path, tree in rows:
        print(f"{state:{widths[0]}}  {name:{widths[1]}}  {path:{widths[2]}}  {tree}")
    return EXIT_OK


def _cmd_add(args: argparse.Namespace) -> int:
    """Make the running daemon watch ROOT too: it indexes ROOT, then keeps it current.

    The daemon remembers its roots across restarts: the index records ROOT, and a
    plain freshd serve watches it again. Exits with 2 when no daemon answers.

    Example:

        $ freshd add ~/src/other
        watching /home/me/src/other (2 roots)
    """
    from freshd_client.locations import real_path

    root = real_path(args.root)  # refuses "" (realpath would make it the cwd)
    with _daemon(args) as http:
        answer = http.call("POST", "/v1/roots", {"path": root})
    return _print_roots(args, answer, "watching")


def _cmd_remove(args: argparse.Namespace) -> int:
    """Make the running daemon stop watching ROOT and forget it and its packages.

    ROOT may be any root the daemon remembers, also one that is missing now (deleted,
    or on a disk not mounted). Exits with 2 when no daemon answers.

    Example:

        $ freshd remove ~/src/other
        no longer watching /home/me/src/other (1 root)
    """
    from urllib.parse import quote

    from freshd_client.locations import real_path

    root = real_path(args.root)
    with _daemon(args) as http:
        answer = http.call("DELETE", f"/v1/roots?path={quote(root)}")
    return _print_roots(args, answer, "no longer watching")


def _cmd_stamp(args: argparse.Namespace) -> int:
    """Record the digest of every local package installed in VENV, inside VENV.

    Local installs are found through PEP 610 (direct_url.json with a file:// URL and
    dir_info): regular installs get a tree stamp (every file), editable ones a meta
    stamp (build inputs). The records go to VENV/.freshd/ and travel with the venv
    into an image layer. A package with a file changed after it was installed is not
    stamped (exit 1) unless --force. Needs no daemon.

    Example:

        $ uv sync --frozen && freshd stamp --venv .venv
        stamped app  meta  b3m2:5e1d0f0c6b2a  /app
        stamped lib  tree  b3t2:c3c34944d97b  /app/libs/lib
    """
    from freshd_client.stamps import lock_path, stamp
    from freshd_client.uvkeys import made_by_uv
    from freshd_client.venv import venv_dir

    venv = venv_dir(args.venv)
    written, problems = stamp(venv, force=args.force)
    if made_by_uv(venv, {}) and not os.path.exists(lock_path(venv)):
        _note(
            args,
            f"warning: no {lock_path(venv)} beside this uv venv: the stamps cover its local "
            "packages, not uv.lock (keep the venv in the project, or let uv decide: "
            "freshd run -- uv run)",
        )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if args.json:
        _print_json({"venv": venv, "stamped": written, "problems": problems})
    elif not written and not problems:
        _note(args, f"no local installs in {venv}: nothing to stamp")
    for record in [] if args.json else written:
        digest = str(record["digest"])[:17]
        print(f"stamped {record['name']}  {record['scope']}  {digest}  {record['source']}")
    return EXIT_ERROR if problems else EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    """Compare VENV's stamps with the content of each local package now.

    Exit 0: every local install is fresh by content. 1: some are stale (each named,
    with the files that changed). 2: some are unknown (not stamped, reinstalled since)
    or cannot be read. A running daemon answers from its index (--sync: after every
    change made before the call); without one, the digests are computed here.

    Example:

        $ freshd check --venv .venv
        fresh  app  /app  (meta, one-shot)
        stale  lib  /app/libs/lib  (tree, one-shot): changed src/lib/core.py (content)
    """
    from freshd_client.stamps import exit_code, verify
    from freshd_client.venv import venv_dir

    try:
        verdicts, moved = verify(venv_dir(args.venv), sync=args.sync)
    except FreshdError as exc:
        _print_error(args, (_failure(exc) or ("error",))[0], str(exc))
        return EXIT_UNKNOWN
    code = exit_code(verdicts)
    if moved is not None and code != EXIT_UNKNOWN:
        code = EXIT_STALE
    if args.json:
        _print_json(
            {
                "fresh": code == EXIT_OK,
                "packages": [v.as_json() for v in verdicts],
                "lockfile": moved,
            }
        )
        return code
    for v in verdicts:
        how = f"{v.scope}, {v.by}" if v.by else v.scope
        why = f": {v.reason}" if v.reason else ""
        print(f"{v.state:7} {v.name}  {v.source}  ({how}){why}")
    if moved is not None:
        print(f"stale   {moved}")
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    """Run CMD so that uv rebuilds exactly the local packages changed by content.

    Local packages whose [tool.uv] cache-keys hold { env = "FRESHD_DIGEST_<NAME>" } get
    that variable set to their content digest (meta when installed editable, else
    tree): uv's own check then compares content, not timestamps, and everything else
    (lock, groups, extras, editable flags, errors) is uv's as without freshd. CMD may
    be uv itself or anything that runs uv. For a venv stamped with freshd stamp and a
    command other than uv, stale pip installs are reinstalled first. CMD replaces
    freshd (exec): its exit code and signals are its own.

    Example:

        $ freshd run -- uv run --locked python -m app
    """
    from freshd_client.uvkeys import digest_env, is_uv, made_by_uv

    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError(
            "freshd run needs a command: freshd run [--venv VENV] -- CMD ...", "freshd run"
        )
    if args.venv is not None:
        from freshd_client.locations import named

        named(args.venv)  # bad input: an error, before anything runs unchanged
    env = dict(os.environ)
    if is_uv(command):
        values, notes = digest_env(command, args.venv, env)
        env.update(values)
        for note in notes:
            _note(args, f"freshd: {note}")
    else:
        from freshd_client.installer import prepare

        env = prepare(
            args.venv, sync_cmd=args.sync_cmd, note=lambda text: _note(args, f"freshd: {text}")
        )
        if made_by_uv(args.venv, env):
            # a uv venv: whatever runs uv below this command gets the digests too
            env.update(digest_env(command, args.venv, env)[0])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - the user's command, as given
    except OSError as exc:
        _print_error(args, "error", f"cannot run {command[0]}: {exc.strerror or exc}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return EXIT_ERROR  # not reached: exec replaced this process


def _cmd_completion(args: argparse.Namespace) -> int:
    """Print freshd's completion script for bash, zsh or tcsh (generated from this parser).

    Example:

        $ eval "$(freshd completion bash)"             # in ~/.bashrc
        $ freshd completion zsh > ~/.zfunc/_freshd     # a directory on zsh's $fpath
    """
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return EXIT_OK


# -- CI agents sharing task results (issue 23, docs/ci.md): graph, affected, exec -------


def _ci_closures(args: argparse.Namespace) -> tuple[Any, Any]:
    """The graph of the checkout (``--root``, else found from the current directory)
    and its closure digests."""
    from freshd_client.ci import closure, graph

    found = graph.load(args.root or graph.find_root("."))
    return found, closure.compute(found, args.env or ())


def _ci_store(args: argparse.Namespace) -> Any:
    from freshd_client.ci import store

    return None if args.no_cache else store.open_store(args.store or store.default_url())


def _cmd_graph(args: argparse.Namespace) -> int:
    """Print the local dependency graph with each package's tree and closure digests.

    Local packages: a uv workspace's members, else every package below the root, and
    the path sources they name. A closure digest covers the package's tree digest, its
    local dependencies' closure digests, the lock's pins of its external dependencies
    and the environment (Python, platform, --env variables); no absolute path.

    Example:

        $ freshd graph
        core  libs/core  b3t2:5d1f0c2e9a4b  fc1:0b7d2f61c4e8  deps: -
        web   apps/web   b3t2:c3c34944d97b  fc1:9e02a7b3d5f1  deps: core
    """
    found, digests = _ci_closures(args)
    rows = [
        {
            "name": name,
            "path": found.nodes[name].rel,
            "deps": list(found.nodes[name].deps),
            "tree": digests.tree[name],
            "closure": digests.closure[name],
            "pins": digests.pins[name],
            "digests_from": digests.source[name],
        }
        for name in found.order
    ]
    if args.json:
        _print_json({"packages": rows, "env": digests.env})
        return EXIT_OK
    for row in rows:
        deps = ", ".join(row["deps"]) or "-"
        print(
            f"{row['name']}  {row['path']}  {row['tree'][:17]}  {row['closure'][:16]}  deps: {deps}"
        )
    return EXIT_OK


def _cmd_affected(args: argparse.Namespace) -> int:
    """List the packages whose closure digest has no recorded success of task NAME.

    In dependency order. The store is --store URL (file:///DIR or s3://BUCKET/PREFIX),
    else $FRESHD_CACHE_STORE, else a directory in your cache. A store that cannot be
    reached makes every package affected, with one warning line.

    Example:

        $ freshd affected --task test --store s3://ci-cache/mono
        web  apps/web  fc1:9e02a7b3d5f1
    """
    from freshd_client.ci.execute import affected

    found, digests = _ci_closures(args)
    names = affected(found, digests, _ci_store(args), args.task)
    if args.json:
        rows = [
            {"name": n, "path": found.nodes[n].rel, "closure": digests.closure[n]} for n in names
        ]
        _print_json({"task": args.task, "affected": rows})
        return EXIT_OK
    for name in names:
        print(f"{name}  {found.nodes[name].rel}  {digests.closure[name][:16]}")
    return EXIT_OK


def _cmd_exec(args: argparse.Namespace) -> int:
    """Run CMD in every package whose closure has no recorded success of task NAME.

    Packages go in dependency order, up to --jobs at once. A recorded success is
    replayed: its log printed, its --outputs restored byte for byte. Otherwise CMD runs
    in the package directory with FRESHD_PACKAGE, FRESHD_PACKAGE_DIR and FRESHD_CLOSURE
    set; a success is recorded, a failure never is. With FRESHD_CACHE_KEY set, records
    are signed and an unsigned or wrongly signed one is not replayed. Exits 1 if any
    package failed (its dependents are skipped).

    Example:

        $ freshd exec --task wheel --outputs 'dist/*.whl' -- uv build --wheel
    """
    from freshd_client.ci.execute import Exec

    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    found, digests = _ci_closures(args)
    store = _ci_store(args)
    run = Exec(found, digests, store, args.task, command, args.outputs or (), args.jobs)
    state = run.run()
    return EXIT_OK if all(s in ("ran", "replayed") for s in state.values()) else EXIT_ERROR


def _ci_parsers(
    verb: Callable[[str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser],
    want: Callable[[str], bool],
) -> None:
    """The subparsers of graph, affected and exec."""
    for name, fn in (("graph", _cmd_graph), ("affected", _cmd_affected), ("exec", _cmd_exec)):
        if not want(name):
            continue
        p = verb(name, fn)
        p.add_argument("--root", metavar="DIR", help="the checkout (default: found from .)")
        p.add_argument(
            "--env",
            action="append",
            metavar="NAME",
            help="an environment variable the task reads: part of the closure (repeatable)",
        )
        if name != "graph":
            p.add_argument("--task", required=True, metavar="NAME", help="the task's name")
            p.add_argument(
                "--store",
                metavar="URL",
                help="file:///DIR or s3://BUCKET/PREFIX (default: $FRESHD_CACHE_STORE)",
            )
            p.add_argument("--no-cache", action="store_true", help="ignore the store")
        if name == "exec":
            p.add_argument(
                "--outputs",
                action="extend",
                nargs="+",
                metavar="GLOB",
                help="files the task makes, relative to the package (recorded, restored)",
            )
            p.add_argument("--jobs", type=int, default=1, metavar="N", help="packages at once")
            p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command")
        else:
            p.add_argument("--json", action="store_true", help="print a JSON object")


# -- end of the CI block ----------------------------------------------------------------


def _daemon(args: argparse.Namespace) -> HttpTransport:
    from freshd_client.http import HttpTransport

    return HttpTransport(args.socket)


def _print_roots(args: argparse.Namespace, answer: dict[str, Any], done: str) -> int:
    if args.json:
        _print_json(answer)
    else:
        count = len(answer["roots"])
        print(f"{done} {answer['root']} ({count} root{'' if count == 1 else 's'})")
    return EXIT_OK


class _ProgressBar:
    """A rich progress bar on a terminal; nothing when stderr is not a TTY."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not sys.stderr.isatty():
            return None
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task("hashing packages", total=None)
        return self._update

    def _update(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _print_json(value: object) -> None:
    import json

    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _note(args: argparse.Namespace, text: str) -> None:
    """A note or warning for the user on stderr, unless ``-q``."""
    if not args.quiet:
        print(text, file=sys.stderr)


def _print_error(args: argparse.Namespace | None, code: str, message: str) -> None:
    """An error as the user asked for it: JSON on stdout with ``--json``, else one line
    on stderr."""
    if args is not None and getattr(args, "json", False):
        _print_json({"error": {"code": code, "message": message}})
    else:
        print(f"Error: {message}", file=sys.stderr)


def _failure(exc: BaseException) -> tuple[str, int] | None:
    """The error code and exit code of an exception a verb raised; None: a bug, whose
    traceback is shown."""
    from freshd_client.errors import DaemonNotRunningError, DaemonRequestError

    if isinstance(exc, UsageError):
        return "usage", EXIT_USAGE
    if isinstance(exc, DaemonNotRunningError):
        return "no_daemon", EXIT_NO_DAEMON
    if isinstance(exc, DaemonRequestError):
        return exc.code, EXIT_ERROR
    if isinstance(exc, FreshdError):
        return "error", EXIT_ERROR
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in DAEMON_MODULES:
        return "missing_extra", EXIT_ERROR
    return None


def _doc(fn: Callable[..., int]) -> tuple[str, str]:
    text = _cleandoc(fn.__doc__ or "")
    return text.splitlines()[0], text


def _cleandoc(doc: str) -> str:
    """``inspect.cleandoc``, without importing inspect (~10 ms of every command's start-up)."""
    lines = doc.expandtabs().split("\n")
    margin = min((len(x) - len(x.lstrip()) for x in lines[1:] if x.lstrip()), default=0)
    lines = [lines[0].lstrip()] + [line[margin:] for line in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every verb (also what docs/cli.md and the shell completion
    are generated from); of verb ``only`` alone when given: argparse costs ~1 ms a verb
    (gettext looks up a translation for every help string), which ``freshd run`` should
    not pay."""
    return _build(only)[0]


def verb_parsers(only: str | None = None) -> dict[str, argparse.ArgumentParser]:
    """The parser of each verb (of ``only``), by name: docs/gen_cli.py and the tests."""
    return _build(only)[1]


def _build(only: str | None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    def want(name: str) -> bool:
        return only is None or only == name

    parser = _Parser(
        prog="freshd",
        description="Content-addressed freshness for local Python packages.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"freshd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _Parser(add_help=False, formatter_class=_Formatter)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (repeatable; default: $FRESHD_LOG_LEVEL, else WARNING, INFO for serve)",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="log less, and no notes or warnings (repeatable)",
    )
    verbs: dict[str, argparse.ArgumentParser] = {}
    db_help = (
        "index directory (default: $FRESHD_INDEX, else $FRESHD_HOME/index, else the user "
        "state directory's freshd/index: ~/.local/state/freshd/index on Linux)"
    )

    def verb(name: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        short, long = _doc(fn)
        p = sub.add_parser(
            name, help=short, description=long, formatter_class=_Formatter, parents=[common]
        )
        p.set_defaults(func=fn)
        verbs[name] = p
        return p

    if want("digest"):
        p = verb("digest", _cmd_digest)
        p.add_argument("path", metavar="PATH", help="the package directory")
        p.add_argument(
            "--scope",
            choices=("tree", "meta"),
            default="tree",
            help="tree: every file (regular installs); meta: build inputs (editable installs)",
        )
        p.add_argument("--json", action="store_true", help="print a JSON object")

    if want("index"):
        p = verb("index", _cmd_index)
        p.add_argument("roots", nargs="*", metavar="ROOT", help="directories to index (default: .)")
        p.add_argument("--db", metavar="DIR", help=db_help)
        p.add_argument("--workers", type=int, metavar="N", help="hashing processes (default: CPUs)")
        p.add_argument("--json", action="store_true", help="print a JSON summary")

    if want("serve"):
        p = verb("serve", _cmd_serve)
        p.add_argument(
            "roots",
            nargs="*",
            metavar="ROOT",
            help="the directories to watch (default: the roots the index remembers, else .)",
        )
        p.add_argument("--db", metavar="DIR", help=db_help)
        p.add_argument(
            "--socket",
            metavar="PATH",
            help="Unix socket (default: $FRESHD_SOCKET, else "
            "$XDG_RUNTIME_DIR/freshd/freshd.sock, else ${TMPDIR:-/tmp}/freshd-UID/freshd.sock)",
        )
        p.add_argument(
            "--tcp",
            metavar="HOST:PORT",
            help="also listen on a loopback TCP address; clients must send the token "
            "(Authorization: Bearer, from the file 'token' in the index directory)",
        )
        p.add_argument("--workers", type=int, metavar="N", help="hashing processes (default: CPUs)")
        p.add_argument(
            "--settle-ms",
            type=float,
            metavar="MS",
            help="coalesce a burst of events for this long before rehashing (default: 10)",
        )
        p.add_argument(
            "--rescan-seconds",
            type=float,
            metavar="S",
            help="rescan interval of a root that cannot be watched (default: 5)",
        )
        p.add_argument(
            "--canary-seconds",
            type=float,
            metavar="S",
            help="how often a liveness cookie proves each root's watch delivers events; a "
            "root whose cookie is 2*S late answers unknown until it does again (default: 1)",
        )
        p.add_argument(
            "--scrub-seconds",
            type=float,
            metavar="S",
            help="compare every indexed file with lstat at least once in S seconds, to see "
            "changes inotify does not report (mmap writes); 0 disables it (default: 120)",
        )
        p.add_argument(
            "--allow-uid",
            metavar="UID,...",
            help="also serve these users on the Unix socket (default: only the daemon's own; "
            "see docs/security.md)",
        )

    socket_help = "the daemon's Unix socket (default: $FRESHD_SOCKET, else the per-user default)"
    for fn, name in ((_cmd_status, "status"), (_cmd_ls, "ls")):
        if not want(name):
            continue
        p = verb(name, fn)
        if name == "status":
            p.add_argument(
                "--socket",
                nargs="?",
                const=_PRINT_SOCKET,
                metavar="PATH",
                help=socket_help + "; alone: print the socket's path and exit",
            )
        else:
            p.add_argument("--socket", metavar="PATH", help=socket_help)
        p.add_argument("--json", action="store_true", help="print the daemon's JSON answer")

    for fn, name in ((_cmd_add, "add"), (_cmd_remove, "remove")):
        if not want(name):
            continue
        p = verb(name, fn)
        p.add_argument("root", metavar="ROOT", help="a directory")
        p.add_argument("--socket", metavar="PATH", help=socket_help)
        p.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    sync_help = "with a daemon: first wait until every change made before the call is seen"
    venv_help = "the virtual environment (default: $VIRTUAL_ENV, else ./.venv)"
    if want("stamp"):
        p = verb("stamp", _cmd_stamp)
        p.add_argument("--venv", metavar="VENV", help=venv_help)
        p.add_argument(
            "--force",
            action="store_true",
            help="stamp even files changed after their package was installed",
        )
        p.add_argument("--json", action="store_true", help="print a JSON object")

    if want("check"):
        p = verb("check", _cmd_check)
        p.add_argument("--venv", metavar="VENV", help=venv_help)
        p.add_argument("--sync", action="store_true", help=sync_help)
        p.add_argument("--json", action="store_true", help="print a JSON object")

    if want("run"):
        p = verb("run", _cmd_run)
        p.add_argument("--venv", metavar="VENV", help=venv_help)
        p.add_argument(
            "--sync-cmd",
            metavar="CMD",
            help="reinstall stale packages with this command instead (e.g. 'uv sync --frozen'; "
            "their names are in $FRESHD_STALE)",
        )
        p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command to run")
    if want("completion"):
        p = verb("completion", _cmd_completion)
        p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell")
    _ci_parsers(verb, want)
    return parser, verbs


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``freshd`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = argv[0] if argv and argv[0] in VERBS else None
    args: argparse.Namespace | None = None
    try:
        args = _parse(argv, verb)
        _configure_logging(args)
        code: int = args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:
        failure = _failure(exc)
        if failure is None:
            raise
        error_code, exit_code = failure
        message = str(exc)
        if error_code == "missing_extra":
            message = (
                f"freshd {verb} needs the daemon, whose dependencies are not installed "
                f"({getattr(exc, 'name', '')}): install 'freshd[daemon]' (Python 3.11 or newer)"
            )
        if args is None and verb in JSON_VERBS and "--json" in _options(argv):
            args = argparse.Namespace(json=True)  # a usage error: --json was asked for
        _print_error(args, error_code, message)
        return exit_code
    return code


def _parse(argv: list[str], verb: str | None) -> argparse.Namespace:
    """The arguments, or UsageError naming the help of the verb concerned."""
    args, extra = build_parser(verb).parse_known_args(argv)
    if extra:
        s = "s" if len(extra) > 1 else ""
        raise UsageError(f"unrecognized argument{s} {' '.join(extra)}", f"freshd {args.command}")
    return args


def _options(argv: list[str]) -> list[str]:
    """``argv`` before a ``--``: the part that holds freshd's own options."""
    return argv[: argv.index("--")] if "--" in argv else argv


def _configure_logging(args: argparse.Namespace) -> None:
    """Set up logging for the verbs that log (the daemon's, over the service package), and
    for any verb when a level was asked for; the other verbs never import logging."""
    serve = args.command == "serve"
    asked = args.verbose or args.quiet or os.environ.get("FRESHD_LOG_LEVEL")
    if not (serve or args.command == "index" or asked):
        return
    from freshd import logs

    level = logs.resolve_level("INFO" if serve else "WARNING", args.verbose, args.quiet, os.environ)
    logs.configure(level, timestamps=serve, env=os.environ)


if __name__ == "__main__":
    sys.exit(main())
