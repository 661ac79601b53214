"""The command line's contract, verb by verb: exit codes, one-line usage errors, errors as
JSON under ``--json``, ``-v``/``-q`` and the log's form, shell completion and
``python -m freshd`` (issue 21, items 5 and 7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import make_tree
from freshd import logs
from freshd.cli import JSON_VERBS, VERBS, build_parser, verb_parsers
from freshd.errors import ConfigError

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import FRESHD, Factory, wait_until  # noqa: E402

pytest_plugins = ["daemon_harness"]

DEADLINE = 60.0


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FRESHD, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
        cwd=cwd,
        check=False,
    )


# -- exit codes and errors, every verb -------------------------------------------------------

# A failing invocation of each verb ({tmp}: a fresh directory, {pkg}: a package): its exit
# code and, for the verbs with --json, the error code of the JSON answer.
FAILURES: dict[str, tuple[list[str], int, str]] = {
    "digest": (["digest", "{tmp}/nope"], 1, "error"),
    "index": (["index", "{tmp}/nope", "--db", "{tmp}/db"], 1, "error"),
    "serve": (
        ["serve", "{tmp}", "--db", "{tmp}/db", "--socket", "{tmp}/s.sock", "--allow-uid", "x"],
        1,
        "error",
    ),
    "status": (["status", "--socket", "{tmp}/none.sock"], 2, "no_daemon"),
    "ls": (["ls", "--socket", "{tmp}/none.sock"], 2, "no_daemon"),
    "add": (["add", "{pkg}", "--socket", "{tmp}/none.sock"], 2, "no_daemon"),
    "remove": (["remove", "{pkg}", "--socket", "{tmp}/none.sock"], 2, "no_daemon"),
    "stamp": (["stamp", "--venv", "{tmp}/nope"], 1, "error"),
    "check": (["check", "--venv", "{tmp}/nope"], 2, "error"),
    "run": (["run", "--venv", "{tmp}/nope", "--", "{tmp}/no-such-command"], 127, "error"),
    "completion": (["completion", "fish"], 2, "usage"),
    "graph": (["graph", "--root", "{tmp}/nope"], 1, "error"),
    "affected": (["affected", "--task", "t", "--root", "{tmp}/nope"], 1, "error"),
    "exec": (["exec", "--task", "t", "--root", "{tmp}/nope", "--", "true"], 1, "error"),
}
# The arguments each verb needs to parse.
REQUIRED: dict[str, list[str]] = {
    "digest": ["."],
    "add": ["."],
    "remove": ["."],
    "completion": ["bash"],
    "run": ["--", "true"],
    "affected": ["--task", "t"],
    "exec": ["--task", "t", "--", "true"],
}


def _fill(argv: Sequence[str], tmp: Path, pkg: Path) -> list[str]:
    return [a.format(tmp=tmp, pkg=pkg) for a in argv]


def test_the_tables_cover_every_verb() -> None:
    assert set(FAILURES) == set(VERBS) == set(verb_parsers())
    with_json = {v for v, p in verb_parsers().items() if "--json" in p.format_usage()}
    assert with_json == set(JSON_VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_a_usage_error_is_one_line_naming_the_verbs_help(verb: str) -> None:
    argv = [verb, "--bogus", *REQUIRED.get(verb, [])]
    proc = run(*argv)
    assert proc.returncode == 2, proc
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"Error: unrecognized argument --bogus (see: freshd {verb} --help)"
    ], proc.stderr
    assert "usage:" not in proc.stderr


@pytest.mark.parametrize("verb", sorted(JSON_VERBS))
def test_a_usage_error_with_json_is_json(verb: str) -> None:
    proc = run(verb, "--json", "--bogus", *REQUIRED.get(verb, []))
    assert proc.returncode == 2, proc
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "error": {
            "code": "usage",
            "message": f"unrecognized argument --bogus (see: freshd {verb} --help)",
        }
    }


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_fails_with_its_documented_exit_code(verb: str, tmp_path: Path) -> None:
    pkg = make_tree(tmp_path / "pkg", {"pyproject.toml": '[project]\nname = "p"\n'})
    argv, exit_code, error_code = FAILURES[verb]
    proc = run(*_fill(argv, tmp_path, pkg))
    assert proc.returncode == exit_code, proc
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    if verb not in JSON_VERBS:
        return
    as_json = run(*_fill(argv, tmp_path, pkg), "--json")
    assert as_json.returncode == exit_code, as_json
    assert as_json.stderr == ""
    error = json.loads(as_json.stdout)["error"]
    assert error == {"code": error_code, "message": lines[-1].removeprefix("Error: ")}


def test_status_json_without_a_daemon_is_json(tmp_path: Path) -> None:
    proc = run("status", "--json", "--socket", str(tmp_path / "none.sock"))
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "no_daemon"
    assert str(tmp_path / "none.sock") in error["message"]


def test_the_daemons_refusal_keeps_its_code(freshd_factory: Factory, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"p/pyproject.toml": '[project]\nname = "p"\n'})
    daemon = freshd_factory(root)
    proc = run("remove", str(tmp_path), "--json", env=daemon.env)
    assert proc.returncode == 1, proc
    error = json.loads(proc.stdout)["error"]
    assert error["code"] not in ("", "error", "usage"), error
    assert str(tmp_path) in error["message"]
    plain = run("remove", str(tmp_path), env=daemon.env)
    assert (plain.returncode, plain.stderr) == (1, f"Error: {error['message']}\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND (see: freshd --help)"),
        (["nope"], "(see: freshd --help)"),
        (["ls", "--socket"], "argument --socket: expected one argument (see: freshd ls --help)"),
        (["serve", "--workers", "two"], "invalid int value: 'two' (see: freshd serve --help)"),
        (["run"], "freshd run needs a command"),
        (["run", "--venv", "v"], "(see: freshd run --help)"),
    ],
)
def test_other_usage_errors(argv: list[str], message: str) -> None:
    proc = run(*argv)
    assert proc.returncode == 2, proc
    [line] = proc.stderr.splitlines()
    assert line.startswith("Error: ") and message in line, line


def test_the_exit_codes_are_documented() -> None:
    """docs/cli.md is generated from the parser (tests/test_docs.py): its epilog."""
    text = build_parser().format_help()
    for code in ("0", "1", "2", "126", "130"):
        assert re.search(rf"^  {code} ", text, re.M), code
    assert '{"error": {"code": CODE, "message": TEXT}}' in text
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "exit code 1,\nor 2 for a usage error" in readme


# -- -v / -q and the log ----------------------------------------------------------------------


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_takes_verbose_and_quiet(verb: str) -> None:
    args = build_parser(verb).parse_args([verb, "-vv", "-q", *REQUIRED.get(verb, [])])
    assert (args.verbose, args.quiet) == (2, 1)
    args = build_parser(verb).parse_args([verb, "--quiet", *REQUIRED.get(verb, [])])
    assert (args.verbose, args.quiet) == (0, 1)


def test_the_level_is_argument_then_environment_then_default() -> None:
    assert logs.resolve_level("WARNING", 0, 0, {}) == "WARNING"
    assert logs.resolve_level("WARNING", 0, 0, {"FRESHD_LOG_LEVEL": "debug"}) == "DEBUG"
    assert logs.resolve_level("WARNING", 1, 0, {"FRESHD_LOG_LEVEL": "error"}) == "INFO"
    assert logs.resolve_level("INFO", 1, 0, {}) == "DEBUG"
    assert logs.resolve_level("INFO", 5, 0, {}) == "DEBUG"
    assert logs.resolve_level("INFO", 0, 1, {"FRESHD_LOG_LEVEL": "DEBUG"}) == "WARNING"
    assert logs.resolve_level("WARNING", 0, 9, {}) == "CRITICAL"
    with pytest.raises(ConfigError, match="FRESHD_LOG_LEVEL"):
        logs.resolve_level("WARNING", 0, 0, {"FRESHD_LOG_LEVEL": "loud"})


def test_a_bad_log_level_is_a_one_line_error(pkg: Path) -> None:
    proc = run("digest", str(pkg), env={**os.environ, "FRESHD_LOG_LEVEL": "loud"})
    assert proc.returncode == 1
    assert proc.stderr == (
        "Error: Config 'FRESHD_LOG_LEVEL' has value 'loud'. "
        "Expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL.\n"
    )


def test_quiet_drops_notes_not_answers(pkg: Path) -> None:
    os.mkfifo(pkg / "src" / "pipe")
    loud = run("digest", str(pkg))
    assert loud.returncode == 0 and loud.stderr.startswith("note: "), loud
    quiet = run("digest", str(pkg), "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, loud.stdout, "")


TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} freshd: INFO freshd \S+ serving ")


def _serving_line(log: Path) -> str:
    def line() -> str | None:
        found = [x for x in log.read_text().splitlines() if " serving " in x]
        return found[0] if found else None

    return wait_until(line, f"the 'serving' line in {log}")


def test_the_daemons_log_has_timestamps(freshd_factory: Factory, tmp_path: Path) -> None:
    daemon = freshd_factory(make_tree(tmp_path / "root", {"p/setup.cfg": ""}))
    assert TIMESTAMPED.match(_serving_line(daemon.log_path)), daemon.log()


def test_the_journal_gets_plain_lines_with_priorities(
    freshd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd names the journal's stream in JOURNAL_STREAM (device:inode of stderr): the
    journal keeps its own timestamps and reads the ``<N>`` priority prefix."""
    freshd_factory.base.mkdir(parents=True, exist_ok=True)
    log = freshd_factory.base / "freshd0.log"
    log.touch()
    st = log.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    daemon = freshd_factory(make_tree(tmp_path / "root", {"p/setup.cfg": ""}))
    assert daemon.log_path == log
    line = _serving_line(log)
    assert line.startswith("<6>INFO freshd "), line


def test_an_inherited_journal_stream_is_not_believed(
    freshd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # not stderr's device and inode
    daemon = freshd_factory(make_tree(tmp_path / "root", {"p/setup.cfg": ""}))
    assert TIMESTAMPED.match(_serving_line(daemon.log_path)), daemon.log()


def test_serve_quiet_logs_no_info(freshd_factory: Factory, tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", {"p/setup.cfg": ""})
    daemon = freshd_factory(root, args=["--workers", "1", "-q"])
    daemon.stop()
    assert daemon.log() == ""


# -- completion and python -m freshd ---------------------------------------------------------


def _complete_in_bash(script: str, words: list[str]) -> list[str]:
    """What bash's completion function offers for ``words`` (the last one being typed)."""
    line = " ".join(words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}\n"
        f'COMP_LINE="{line}"; COMP_POINT={len(line)}\n'
        '_shtab_freshd; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    return proc.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_offers_verbs_and_options(tmp_path: Path) -> None:
    proc = run("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "freshd.bash"
    script.write_text(proc.stdout)
    assert _complete_in_bash(str(script), ["freshd", "st"]) == ["status", "stamp"]
    assert set(_complete_in_bash(str(script), ["freshd", ""])) == set(VERBS)
    options = _complete_in_bash(str(script), ["freshd", "ls", "--"])
    assert {"--json", "--socket", "--quiet", "--verbose"} <= set(options)


@pytest.mark.parametrize("shell", ["zsh", "tcsh"])
def test_other_shells_get_a_script_naming_every_verb(shell: str) -> None:
    proc = run("completion", shell)
    assert proc.returncode == 0, proc.stderr
    for verb in VERBS:
        assert verb in proc.stdout


def test_python_dash_m_freshd(tmp_path: Path) -> None:
    def module(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "freshd", *args],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )

    version = module("--version")
    assert (version.returncode, version.stdout) == (0, run("--version").stdout)
    status = module("status", "--json", "--socket", str(tmp_path / "none.sock"))
    assert status.returncode == 2
    assert json.loads(status.stdout)["error"]["code"] == "no_daemon"
