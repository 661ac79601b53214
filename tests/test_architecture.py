"""docs/architecture.md names every product module, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (ROOT / "client" / "freshd_client", ROOT / "service" / "freshd")


def product_modules() -> set[str]:
    """Every module of the two packages, as ``freshd_client/content/scan.py``."""
    return {
        path.relative_to(package.parent).as_posix()
        for package in PACKAGES
        for path in package.rglob("*.py")
    }


def named_modules() -> set[str]:
    """Every module path in the first column of a table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    return set(re.findall(r"^\| `((?:freshd|freshd_client)/[\w/]+\.py)` \|", text, re.M))


def test_every_product_module_is_in_the_architecture_doc() -> None:
    missing = product_modules() - named_modules()
    assert not missing, f"add to docs/architecture.md: {sorted(missing)}"


def test_the_architecture_doc_names_no_module_that_is_gone() -> None:
    gone = named_modules() - product_modules()
    assert not gone, f"remove from docs/architecture.md: {sorted(gone)}"
