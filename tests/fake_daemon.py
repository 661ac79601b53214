"""A scripted stand-in for the daemon's index writer, run as a subprocess by the client tests.

LMDB refuses to open one environment twice in a process, so the writer lives in its
own process, as the real daemon does. It keeps the ``daemon`` meta record's heartbeat
fresh and acknowledges cookie files the way the daemon's watcher does: it first
applies every change queued as ``pending`` (the "earlier events"), then records the
cookie's name in the ``cookies`` database and deletes the file.

Commands arrive as JSON lines on stdin; each is answered by one line on stdout
(``ok`` or ``error: …``). See ``FakeDaemon`` in tests/client_fakes.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

from freshd.index.writer import Index
from freshd_client.spec import schema as sc
from freshd_client.spec.schema import COOKIE_PREFIX

BEAT_S = 0.1
POLL_S = 0.0005


class Fake:
    def __init__(self, index_dir: str) -> None:
        self.index = Index(index_dir, map_size=1 << 20)  # small: churn makes the map grow
        self.lock = threading.Lock()
        self.pending_lock = threading.Lock()
        self.pending: list[sc.PackageRecord] = []
        self.roots: set[str] = set()
        self.daemon: dict[str, Any] = {"status": "ready", "api": sc.API_VERSION, "age_ns": 0}
        self.beating = True
        self.acking = True
        self.stop = threading.Event()

    def write(self, fn: Any) -> None:
        with self.lock:
            self.index.write(fn)

    def beat(self) -> None:
        now = time.time_ns()
        record = sc.DaemonRecord(
            api_version=self.daemon["api"],
            status=self.daemon["status"],
            pid=os.getpid(),
            heartbeat_ns=now - self.daemon["age_ns"],
            started_ns=now,
            socket=self.daemon.get("socket"),
            version="0.1.0",
        )
        meta = self.index.dbs[sc.DB_META]
        self.write(lambda txn: txn.put(sc.META_DAEMON, sc.encode_daemon(record), db=meta))

    def put(self, records: list[sc.PackageRecord]) -> None:
        def apply(txn: Any) -> None:
            for record in records:
                self.index.put_package(txn, record, None)

        self.write(apply)

    def heartbeat_loop(self) -> None:
        while not self.stop.wait(BEAT_S):
            if self.beating:
                self.beat()

    def cookie_loop(self) -> None:
        cookies = self.index.dbs[sc.DB_COOKIES]
        while not self.stop.wait(POLL_S):
            if not self.acking:
                continue
            for root in list(self.roots):
                try:
                    names = [n for n in os.listdir(root) if n.startswith(COOKIE_PREFIX)]
                except OSError:
                    continue
                if not names:
                    continue
                with self.pending_lock:
                    pending, self.pending = self.pending, []
                self.put(pending)
                stamp = sc.U64.pack(time.time_ns())
                self.write(
                    lambda txn, names=names, stamp=stamp: [
                        txn.put(os.fsencode(n), stamp, db=cookies) for n in names
                    ]
                )
                for name in names:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(root, name))

    def handle(self, cmd: dict[str, Any]) -> None:
        op = cmd.pop("op")
        if op == "package":
            pending = cmd.pop("pending", False)
            cmd.setdefault("generation", 1)
            cmd.setdefault("updated_ns", time.time_ns())
            cmd.setdefault("files", 1)
            record = sc.PackageRecord(**cmd)
            if pending:
                with self.pending_lock:
                    self.pending.append(record)
            else:
                self.put([record])
        elif op == "root":
            self.roots.add(cmd["path"])
            self.write(lambda txn: self.index.put_root(txn, cmd["path"]))
        elif op == "daemon":
            self.beating = cmd.pop("beat", True)
            self.acking = cmd.pop("ack", True)
            self.daemon.update(cmd)
            self.beat()
        elif op == "delete_daemon":
            self.beating = False
            meta = self.index.dbs[sc.DB_META]
            self.write(lambda txn: txn.delete(sc.META_DAEMON, db=meta))
        elif op == "schema":
            meta = self.index.dbs[sc.DB_META]
            self.write(lambda txn: txn.put(sc.META_SCHEMA, cmd["value"].encode(), db=meta))
        elif op == "churn":
            # many file records: grows the map while readers read (MDB_MAP_RESIZED)
            records = [
                (os.urandom(16) + b"f%d" % i, os.urandom(cmd.get("size", 200)))
                for i in range(cmd["n"])
            ]
            files = self.index.dbs[sc.DB_FILES]
            self.write(lambda txn: txn.cursor(db=files).putmulti(records))
        else:
            raise ValueError(f"unknown op {op!r}")


def main() -> None:
    fake = Fake(sys.argv[1])
    fake.beat()
    for loop in (fake.heartbeat_loop, fake.cookie_loop):
        threading.Thread(target=loop, daemon=True).start()
    print("ok", flush=True)
    for line in sys.stdin:
        try:
            fake.handle(json.loads(line))
        except Exception as exc:
            print(f"error: {type(exc).__name__}: {exc}", flush=True)
        else:
            print("ok", flush=True)
    fake.stop.set()
    fake.index.close()


if __name__ == "__main__":
    main()
