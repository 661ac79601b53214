"""The exceptions: one name means one thing, and each lives in its package's errors module.

``freshd_client.errors`` and ``freshd.errors`` draw their exception trees in their
docstrings; the trees must be the classes as defined (every class, with its parent), and
no other product module may define a public exception (issue 22: two ``DaemonError``s
with different meanings, ``VenvError`` and ``ApiError`` outside the errors modules).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

import freshd
import freshd_client
from freshd import errors as service_errors
from freshd_client import errors as client_errors


def product_modules() -> list[ModuleType]:
    modules = []
    for package in (freshd_client, freshd):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rpartition(".")[2] != "__main__":  # __main__ runs the CLI
                modules.append(importlib.import_module(info.name))
    return modules


def exceptions_defined_in(module: ModuleType) -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
    }


def test_public_exceptions_live_in_errors_modules() -> None:
    outside = {
        f"{module.__name__}.{name}"
        for module in product_modules()
        if not module.__name__.endswith(".errors")
        for name in exceptions_defined_in(module)
        if not name.startswith("_")  # private control flow, never raised to a caller
    }
    assert outside == set()


def test_one_name_means_one_exception() -> None:
    seen: dict[str, set[str]] = {}
    for module in product_modules():
        for name in exceptions_defined_in(module):
            seen.setdefault(name, set()).add(module.__name__)
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Each class the docstring's tree names, with the class drawn above it (None for the
    root). A branch is drawn as ``├── Name`` or ``└── Name``, four columns per level."""
    tree: dict[str, str | None] = {}
    stack: list[str] = []
    root_column = 0
    for line in doc.splitlines():
        branch = re.search(r"[├└]── (\w+)", line)
        if branch is None:
            root = re.match(r"^( *)(\w+Error)\b", line)
            if root and not stack:
                root_column = len(root.group(1))
                stack = [root.group(2)]
                tree[root.group(2)] = None
            continue
        depth = (branch.start() - root_column) // 4 + 1
        del stack[depth:]
        tree[branch.group(1)] = stack[-1]
        stack.append(branch.group(1))
    return tree


@pytest.mark.parametrize("module", [client_errors, service_errors], ids=lambda m: m.__name__)
def test_the_docstring_tree_is_the_classes(module: ModuleType) -> None:
    tree = drawn_tree(module.__doc__ or "")
    defined = exceptions_defined_in(module)
    assert set(defined) <= set(tree), "a class missing from the tree"
    for name, parent in tree.items():
        cls = defined.get(name) or getattr(client_errors, name)
        if parent is not None:
            assert parent in {base.__name__ for base in cls.__bases__}, (name, parent)


def _to_the_terminal(call: ast.Call) -> bool:
    """A ``print`` to stdout or stderr; one to a stream the caller handed in is not."""
    stream = next((k.value for k in call.keywords if k.arg == "file"), None)
    return stream is None or ast.unparse(stream) in ("sys.stdout", "sys.stderr")


def test_only_the_cli_prints() -> None:
    """Library modules raise, log, or write to a stream or callback they are given; what
    reaches the terminal is the CLI's choice."""
    printing = []
    for module in product_modules():
        if module.__name__ == "freshd.cli" or module.__file__ is None:
            continue
        with open(module.__file__, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        printing += [
            f"{module.__name__}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
            and _to_the_terminal(node)
        ]
    assert printing == []
