"""Documentation that is generated or quoted must match the code."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "cli.md").read_text() == module.render(), "run `make docs`"


def test_readme_quick_start_names_real_make_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    targets = re.findall(r"^make (\w+)", quick, re.M)
    assert targets[:2] == ["run", "test"]
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), target
