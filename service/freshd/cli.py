"""The ``freshd`` command line.

argparse (standard library) rather than click or typer: the client-side verbs
must start within a few milliseconds of a bare interpreter, so every verb
imports what it needs only when it runs. Only this module prints and chooses
exit codes: 0 success, 1 an error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from freshd import __version__

EXIT_OK = 0
EXIT_ERROR = 1


def _cmd_digest(args: argparse.Namespace) -> int:
    """Print the digest of the package at PATH, computed now, with no daemon and no index.

    Example:

        $ freshd digest libs/core
        b3t1:9f0c…
        $ freshd digest libs/core --scope meta --json
    """
    from freshd_client.oneshot import digest_path

    result = digest_path(args.path, args.scope)
    value = result.tree if args.scope == "tree" else result.meta
    for note in (*(f"skipped {s}: never opened" for s in result.skipped), *result.notes):
        print(f"note: {note}", file=sys.stderr)
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
    racy-timestamp rule); everything else is hashed again.

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
        _print_json({"index": cfg.index_dir, **{k: getattr(summary, k) for k in summary.__slots__}})
    else:
        print(
            f"indexed {summary.packages} packages, {summary.files} files "
            f"(hashed {summary.hashed}, reused {summary.reused}, "
            f"{summary.hashed_bytes / 1e6:.1f} MB) in {summary.seconds:.2f} s; "
            f"removed {summary.removed}; index: {cfg.index_dir}"
        )
    return EXIT_ERROR if summary.errors else EXIT_OK


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
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _doc(fn: Callable[..., int]) -> tuple[str, str]:
    text = inspect.cleandoc(fn.__doc__ or "")
    return text.splitlines()[0], text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (also used to generate docs/cli.md)."""
    parser = argparse.ArgumentParser(
        prog="freshd",
        description="Content-addressed freshness for local Python packages.",
    )
    parser.add_argument("--version", action="version", version=f"freshd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    short, long = _doc(_cmd_digest)
    p = sub.add_parser("digest", help=short, description=long, formatter_class=raw)
    p.add_argument("path", metavar="PATH", help="the package directory")
    p.add_argument(
        "--scope",
        choices=("tree", "meta"),
        default="tree",
        help="tree: every file (regular installs); meta: build inputs (editable installs)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=_cmd_digest)

    short, long = _doc(_cmd_index)
    p = sub.add_parser("index", help=short, description=long, formatter_class=raw)
    p.add_argument("roots", nargs="*", metavar="ROOT", help="directories to index (default: .)")
    p.add_argument("--db", metavar="DIR", help="index directory (default: $FRESHD_HOME/index)")
    p.add_argument("--workers", type=int, metavar="N", help="hashing processes (default: CPUs)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=_cmd_index)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``freshd`` console script."""
    args = build_parser().parse_args(argv)
    from freshd_client.errors import FreshdError

    try:
        code: int = args.func(args)
    except FreshdError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
