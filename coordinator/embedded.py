"""The embedded store: the coordinator's tables in one local file, for one replica.

For demos and small fleets (under about 10,000 machines) that do not want
to run etcd. Same tables, same rules, same fencing term semantics; no high
availability: there is exactly one replica, and it always leads. Every
commit rewrites the file atomically (temporary file, fsync, rename), so a
crash leaves the previous state or the new one. The term grows by one on
every start and is on disk before it is used, as a shard's epoch is.
One replica per data directory: `DataDirLock` holds an exclusive lock on it for
as long as the replica runs, so a second one refuses to start instead of
writing under a term of its own (two leaders, and a term that goes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import grpc

from bigfleet.coordinator.election import Leadership
from bigfleet.coordinator.store import PREFIX, NotLeader, Store
from bigfleet.errors import BigFleetError

LOCK_FILE = "coordinator.lock"


class DataDirLocked(BigFleetError):
    """Another replica holds the embedded store's data directory; this one must not start."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DataDirLock:
    """An exclusive `flock` on `<directory>/coordinator.lock`, held until released.

    The kernel drops the lock when the holder exits, however it exits, so a crashed
    replica never leaves a stale lock behind. The file names the holder's pid.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"another coordinator replica (pid {holder}) holds the embedded store in "
                f"{self.directory} (lock {self.path}); the embedded store serves one replica "
                "per data directory: stop the other or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class EmbeddedState:
    def __init__(self, path: Path, prefix: bytes = PREFIX) -> None:
        self.path = path
        self.prefix = prefix
        self.term = 0
        self.tables: dict[str, str] = {}
        if path.exists():
            saved = json.loads(path.read_text())
            self.term, self.tables = saved["term"], saved["tables"]

    async def get(self, key: str) -> bytes | None:
        value = self.tables.get(key)
        return value.encode() if value is not None else None

    async def scan(self, under: str) -> dict[str, bytes]:
        return {k: v.encode() for k, v in self.tables.items() if k.startswith(under)}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        with scratch.open("w") as f:
            json.dump({"term": self.term, "tables": self.tables}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        scratch.replace(self.path)


class EmbeddedStore:
    """Writes for the term that opened it; a later term's start fences it off."""

    def __init__(self, state: EmbeddedState, term: int) -> None:
        self.state = state
        self.term = term
        self.prefix = state.prefix

    async def get(self, key: str) -> bytes | None:
        return await self.state.get(key)

    async def scan(self, under: str) -> dict[str, bytes]:
        return await self.state.scan(under)

    async def put(self, key: str, value: bytes) -> None:
        await self.commit({key: value})

    async def commit(self, puts: dict[str, bytes], deletes: Iterable[str] = ()) -> None:
        if self.state.term != self.term:
            raise NotLeader(f"term {self.term} is over; the store is at {self.state.term}")
        for key, value in puts.items():
            self.state.tables[key] = value.decode()
        for key in deletes:
            self.state.tables.pop(key, None)
        self.state.save()


class EmbeddedElection:
    """The only replica, so it leads from the start until it resigns."""

    def __init__(self, state: EmbeddedState, identity: str) -> None:
        self.state = state
        self.identity = identity
        self.ttl_s = 1
        self.lost = asyncio.Event()
        self._leading = False

    async def campaign(self) -> Leadership:
        if self._leading:  # a second campaign in one process would only wait forever
            await asyncio.Event().wait()
        self.state.term += 1
        self.state.save()  # the new term is durable before anything is written under it
        self._leading, self.lost = True, asyncio.Event()
        return Leadership(self.identity, self.state.term)

    async def leader(self) -> str | None:
        return self.identity if self._leading else None

    async def resign(self) -> None:
        self._leading = False
        self.lost.set()

    def store_for(self, term: int, prefix: bytes) -> Store:
        return EmbeddedStore(self.state, term)
