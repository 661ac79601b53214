"""An ``s3://`` store through the real boto3 against a real S3 API server: moto's server
mode on 127.0.0.1 (issue 23, items 4 and 6). Never an in-process mock of boto3."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ci_repo import PACKAGES, Agent, make_mono, write
from test_ci_exec import TASK, outputs

BUCKET = "ci-cache"
"""moto keeps its buckets per process, across its servers: the fixture empties it."""
DEADLINE_S = 60.0
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any
    "AWS_DEFAULT_REGION": "us-east-1",
}


def s3_client(endpoint: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_DEFAULT_REGION"],
    )
    return session.client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    """A moto S3 server on a free loopback port with an empty bucket; its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):  # what an earlier test of this process left
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    yield endpoint
    server.stop()


def agents(tmp_path: Path, endpoint: str) -> tuple[Agent, Agent]:
    a = make_mono(tmp_path / "agent-a" / "mono")
    b = tmp_path / "b" / "checkout"
    shutil.copytree(a, b)
    env = {**AWS, "AWS_ENDPOINT_URL_S3": endpoint}
    return Agent(a, tmp_path / "pa", env), Agent(b, tmp_path / "pb", env)


def exec_s3(agent: Agent, *extra: str, cmd: str = TASK) -> subprocess.CompletedProcess[str]:
    return agent.freshd(
        "exec", "--task", "build", "--store", f"s3://{BUCKET}/mono/ci", "--outputs", "dist/**",
        *extra, "--", "sh", "-c", cmd,
    )  # fmt: skip


def test_agent_b_replays_from_s3(tmp_path: Path, s3: str) -> None:
    a, b = agents(tmp_path, s3)
    ran = exec_s3(a, "--jobs", "2")
    assert a.statuses(ran.stderr) == dict.fromkeys(PACKAGES, "ran")
    keys = [o["Key"] for o in s3_client(s3).list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert all(k.startswith("mono/ci/") for k in keys)
    assert len([k for k in keys if k.startswith("mono/ci/records/build/")]) == 4
    replayed = exec_s3(b)
    assert b.statuses(replayed.stderr) == dict.fromkeys(PACKAGES, "replayed")
    assert outputs(b.root) == outputs(a.root)
    # an edit: exactly the package and its dependents run again
    write(b.root / "libs/core/src/core/__init__.py", "VALUE = 2\n")
    answer = b.freshd("affected", "--task", "build", "--store", f"s3://{BUCKET}/mono/ci")
    assert [line.split()[0] for line in answer.stdout.splitlines()] == ["core", "util", "web"]
    again = exec_s3(b)
    expected = {"core": "ran", "util": "ran", "web": "ran", "other": "replayed"}
    assert b.statuses(again.stderr) == expected


def test_a_partial_upload_is_never_a_hit(tmp_path: Path, s3: str) -> None:
    a, b = agents(tmp_path, s3)
    exec_s3(a)
    client = s3_client(s3)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="mono/ci/records/")["Contents"]
    # an agent that stopped after the blobs and before the record: no record, a miss
    web = next(
        o["Key"]
        for o in listed
        if b'"package": "web"' in client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    )
    client.delete_object(Bucket=BUCKET, Key=web)
    # a record whose blob did not arrive (or went): a miss, said in one line
    blobs = client.list_objects_v2(Bucket=BUCKET, Prefix="mono/ci/blobs/")["Contents"]
    record = next(o["Key"] for o in listed if o["Key"] != web)
    body = client.get_object(Bucket=BUCKET, Key=record)["Body"].read().decode()
    gone = next(o["Key"] for o in blobs if o["Key"].rsplit("/", 1)[1] in body)
    client.delete_object(Bucket=BUCKET, Key=gone)
    kept = [o["Key"] for o in listed if o["Key"] != web]
    bodies = [client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in kept]
    lacking = {  # the packages whose record names the blob that went
        json.loads(raw)["package"] for raw in bodies if gone.rsplit("/", 1)[1].encode() in raw
    }
    assert lacking and "web" not in lacking
    done = exec_s3(b)
    expected = {n: "ran" if n in lacking or n == "web" else "replayed" for n in PACKAGES}
    assert b.statuses(done.stderr) == expected
    assert "is missing from the store" in done.stderr
    assert done.returncode == 0


def test_the_store_going_away_mid_run_is_a_miss_with_one_warning(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                s3_client(endpoint).create_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        a, _b = agents(tmp_path, endpoint)
        # the first package's task stops the store: every later lookup and write fails
        stop = f'[ "$FRESHD_PACKAGE" != core ] || kill {server.pid}; ' + TASK
        done = exec_s3(a, cmd=stop)
        assert server.wait(timeout=DEADLINE_S) is not None
        assert a.statuses(done.stderr) == dict.fromkeys(PACKAGES, "ran")
        warnings = [line for line in done.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1, done.stderr
        assert "running without the store" in warnings[0]
        assert "Traceback" not in done.stderr
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def test_an_s3_store_without_boto3_names_the_extra(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from freshd.cli import main\n"
        "sys.exit(main(['affected', '--task', 't', '--store', 's3://b/p', "
        f"'--root', {str(root)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "install 'freshd[s3]'" in done.stderr
    assert done.stderr.count("\n") == 1


def test_a_directory_store_does_not_load_boto3(tmp_path: Path) -> None:
    root = make_mono(tmp_path / "mono")
    code = (
        "import sys\n"
        "from freshd.cli import main\n"
        f"main(['affected', '--task', 't', '--store', {str(tmp_path / 's')!r}, "
        f"'--root', {str(root)!r}])\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
