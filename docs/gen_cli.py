"""Generate docs/cli.md from the CLI's --help (``make docs``; checked by tests/test_docs.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent / "cli.md"


def render() -> str:
    """The CLI reference as Markdown, from argparse's own help text."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width
    from freshd.cli import build_parser, verb_parsers

    parser = build_parser()
    parts = [
        "# freshd command line\n",
        "Generated from `freshd --help` by `make docs`; do not edit by hand.\n",
        "```\n" + parser.format_help() + "```\n",
    ]
    for name, subparser in verb_parsers().items():
        parts.append(f"## freshd {name}\n")
        parts.append("```\n" + subparser.format_help() + "```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.read_text() == render() else 1)
    TARGET.write_text(render())
