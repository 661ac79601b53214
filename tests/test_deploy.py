"""deploy/: the service files parse, run `freshd serve`, and the README quotes real commands.

None of this needs a running systemd or launchd: the unit is read as the INI dialect
systemd uses (and checked by `systemd-analyze verify` where that is installed), the
plist with plistlib, and every quoted command line with the CLI's own parser.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from freshd.cli import build_parser
from freshd_client.transport import locations

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "systemd" / "freshd.service"
PLIST = DEPLOY / "launchd" / "dev.freshd.daemon.plist"
README = DEPLOY / "README.md"

Unit = dict[str, list[tuple[str, str]]]


def read_unit(path: Path) -> Unit:
    """systemd's INI dialect: sections of ``Key=Value`` lines, ``#``/``;`` comments,
    backslash continuations; a key may repeat (``Environment=``), so values are lists."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    for line in path.read_text().replace("\\\n", " ").splitlines():
        text = line.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("[") and text.endswith("]"):
            current = sections.setdefault(text[1:-1], [])
            continue
        key, sep, value = text.partition("=")
        assert current is not None, f"{path.name}: key outside a section: {line!r}"
        assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"not INI: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section``, in file order."""
    return [value for name, value in unit.get(section, []) if name == key]


def setting(unit: Unit, section: str, key: str) -> str | None:
    """The effective value of a single-valued key: its last assignment, as systemd reads it."""
    found = values(unit, section, key)
    return found[-1] if found else None


def unit_environment(unit: Unit) -> dict[str, str]:
    """The unit's ``Environment=`` defaults (the env file, if any, overrides them)."""
    return dict(v.partition("=")[::2] for v in values(unit, "Service", "Environment"))


def exec_start_argv(unit: Unit) -> list[str]:
    """ExecStart= split as systemd does: an unbraced ``$VAR`` becomes its words, maybe none."""
    env = unit_environment(unit)
    argv: list[str] = []
    for word in (setting(unit, "Service", "ExecStart") or "").split():
        if word.startswith("$"):
            assert word[1:] in env, f"ExecStart= uses {word} with no Environment= default"
            argv += env[word[1:]].split()
        else:
            argv.append(word)
    return argv


def test_unit_parses_with_the_required_keys() -> None:
    unit = read_unit(UNIT)
    assert {"Unit", "Service", "Install"} <= unit.keys()
    assert setting(unit, "Service", "Restart") == "on-failure"
    assert setting(unit, "Service", "RestartSec")
    assert setting(unit, "Service", "KillSignal") == "SIGTERM"
    assert setting(unit, "Service", "TimeoutStopSec")
    assert "-%h/.config/freshd/env" in values(unit, "Service", "EnvironmentFile")
    assert setting(unit, "Install", "WantedBy") == "default.target"
    # The socket may live in /tmp and the roots in the home directory: a private /tmp
    # or a hidden home would cut the daemon off from its clients or its roots.
    assert setting(unit, "Service", "PrivateTmp") == "no"
    assert setting(unit, "Service", "ProtectHome") in (None, "no")


def test_unit_exec_start_runs_freshd_serve() -> None:
    argv = exec_start_argv(read_unit(UNIT))
    assert Path(argv[0]).name == "freshd"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.roots == ["%h/src"]


def test_unit_socket_is_the_clients_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRESHD_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    socket = unit_environment(read_unit(UNIT))["FRESHD_SOCKET"]
    assert socket.replace("%t", "/run/user/1000") == locations.socket_path()


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify resolves %h from $HOME and insists that ExecStart= is executable, so
    # give it a home whose ~/.local/bin/freshd is this environment's freshd.
    freshd = Path(sys.executable).with_name("freshd")
    assert freshd.is_file(), f"{freshd}: the freshd script is not installed"
    (tmp_path / ".local" / "bin").mkdir(parents=True)
    (tmp_path / ".local" / "bin" / "freshd").symlink_to(freshd)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [analyze, "--user", "--man=no", "--generators=no", "verify", str(UNIT)],
        env={**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    # Unknown keys and unparsable values are only warnings (exit 0): fail on them too.
    complaints = [line for line in output.splitlines() if "freshd.service" in line]
    assert result.returncode == 0, output
    assert not complaints, output


def test_plist_runs_freshd_serve_as_a_user_agent() -> None:
    with PLIST.open("rb") as fh:
        plist = plistlib.load(fh)
    assert plist["Label"] == PLIST.stem
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert "/Library/Logs/" in plist["StandardErrorPath"]
    assert os.path.isabs(plist["EnvironmentVariables"]["FRESHD_SOCKET"])
    argv = plist["ProgramArguments"]
    assert Path(argv[0]).name == "freshd"
    assert build_parser().parse_args(argv[1:]).command == "serve"
    # launchd expands neither ~ nor $VAR: every path must be spelled out.
    strings = [*argv, *plist["EnvironmentVariables"].values(), plist["StandardErrorPath"]]
    assert all(os.path.isabs(s) for s in strings if "/" in s), strings


_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_REDIRECTION = re.compile(r"\s\d*(?:>>?|<)&?\s*\S+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATORS = {"|", "||", "&&", ";", ";;", "&", "(", ")"}
_PREFIXES = {"!", "if", "then", "else", "elif", "while", "until", "do", "exec", "sudo"}


def quoted_shell_lines(markdown: str) -> list[str]:
    """Code lines of a Markdown text: fenced blocks (only ``$``-prompted lines of
    ``console`` blocks, whose other lines are output) and inline code spans."""
    lines: list[str] = []
    for lang, body in _FENCE.findall(markdown):
        for line in body.replace("\\\n", " ").splitlines():
            if line.startswith("$ "):
                lines.append(line[2:])
            elif lang != "console":
                lines.append(line)
    return lines + _INLINE.findall(_FENCE.sub("", markdown))


def freshd_commands(line: str) -> list[list[str]]:
    """The argument vectors of every ``freshd`` command in a shell (or ExecStart=) line;
    a bare ``freshd`` names the program rather than quoting a command line."""
    if not re.search(r"\bfreshd\b", line):
        return []
    lexer = shlex.shlex(_REDIRECTION.sub(" ", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    found = []
    for words in commands:
        # Skip `sudo`, `until` and the like, and VAR=value prefixes, but not a unit's
        # ExecStart=/path/to/freshd, whose value is the program.
        while words and (
            words[0] in _PREFIXES
            or (_ASSIGNMENT.match(words[0]) and not _is_freshd(_program(words[0])))
        ):
            words.pop(0)
        if len(words) > 1 and _is_freshd(_program(words[0])):
            found.append([_program(words[0]), *words[1:]])
    return found


def _program(word: str) -> str:
    match = _ASSIGNMENT.match(word)
    return word[match.end() :] if match else word


def _is_freshd(program: str) -> bool:
    return Path(program).name == "freshd"


README_COMMANDS = [
    shlex.join(argv)
    for line in quoted_shell_lines(README.read_text())
    for argv in freshd_commands(line)
]


def test_readme_quotes_the_daemon_verbs() -> None:
    verbs = {shlex.split(command)[1] for command in README_COMMANDS}
    assert {"serve", "status", "ls", "add", "remove"} <= verbs, verbs


@pytest.mark.parametrize("command", sorted(set(README_COMMANDS)))
def test_readme_command_is_known_to_the_cli(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        if exc.code:
            pytest.fail(f"deploy/README.md quotes `{command}`: {capsys.readouterr().err.strip()}")


def test_freshd_commands_finds_commands_not_mentions() -> None:
    assert freshd_commands("journalctl --user -u freshd -f") == []
    assert freshd_commands("uv tool install freshd") == []
    assert freshd_commands("freshd") == []
    assert freshd_commands("until freshd status --json 2>/dev/null | grep -q ready; do") == [
        ["freshd", "status", "--json"]
    ]
    assert freshd_commands("ExecStart=%h/.local/bin/freshd serve $ROOTS") == [
        ["%h/.local/bin/freshd", "serve", "$ROOTS"]
    ]
    assert freshd_commands("FRESHD_HOME=/x freshd ls && freshd add ~/src # note") == [
        ["freshd", "ls"],
        ["freshd", "add", "~/src"],
    ]


# -- the Docker example (deploy/docker/Dockerfile) ------------------------------------------

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in dockerfile_instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def test_dockerfile_syncs_and_starts_through_freshd_and_keeps_the_apps_path() -> None:
    """The text's promises; tests/test_docker.py builds and runs it with real Docker."""
    build, runtime = [s for s in stages(DOCKERFILE.read_text()) if len(s) > 1][-2:]
    build_runs = [rest for keyword, rest in build if keyword == "RUN"]
    assert any(r.startswith("freshd run -- uv sync --locked") for r in build_runs)
    assert ("COPY", "--from=build /app /app") in runtime
    entrypoint = json.loads(dict(runtime)["ENTRYPOINT"])
    command = json.loads(dict(runtime)["CMD"])
    assert entrypoint == ["freshd", "run", "--"]
    assert command[:2] == ["uv", "run"] and "--locked" in command
    everything = [rest for stage in (build, runtime) for _keyword, rest in stage]
    assert not [r for r in everything if "PATH=" in r], "freshd's venv must not shadow the app's"
    assert not [r for r in build_runs if "pip install" in r and "freshd-wheels" not in r]


@pytest.mark.parametrize(
    "argv",
    [
        shlex.split(rest)
        for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text())
        if keyword == "RUN" and rest.startswith("freshd ")
    ]
    + [
        json.loads(rest)
        for keyword, rest in dockerfile_instructions(DOCKERFILE.read_text())
        if keyword == "ENTRYPOINT"
    ],
    ids=shlex.join,
)
def test_dockerfile_freshd_commands_are_known_to_the_cli(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[-1] == "--":
        argv = [*argv, "true"]  # the entrypoint gets its command from CMD
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        if exc.code:
            pytest.fail(
                f"deploy/docker/Dockerfile runs `{shlex.join(argv)}`: {capsys.readouterr().err}"
            )
