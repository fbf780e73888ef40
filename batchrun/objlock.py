"""The lock of an object-storage output: one live run writes it, wherever runs start.

``RemoteLock.acquire`` promises that no other live run holds the same
output. With ``limits.share`` the lock is a Redis key set only if absent;
without it, a lock object beside the dataset created only if absent (a
conditional put, ``If-None-Match: *``). Either way the holder renews it
every few seconds; a lock not renewed for ``LOCK_TTL_S`` belongs to a run
that is gone and is taken over (a lock left by a dead process of this
same host at once), with a warning naming the run that left it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

from batchrun.errors import JobError, LockedError
from batchrun.objstore import side_key, split, store_of
from batchrun.redact import describe_url

LOCK_TTL_S = 30.0
_RENEW_S = LOCK_TTL_S / 3


def holder(run_id: str) -> dict[str, Any]:
    """Who holds a lock: this process, its host and run."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe(info: dict[str, Any]) -> str:
    """A holder in words."""
    return f"pid {info.get('pid')} on {info.get('host')}, run {info.get('run_id')}"


def gone(info: dict[str, Any]) -> bool:
    """Whether the holder is a process of this host that no longer runs."""
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


class RemoteLock:
    """An exclusive lock on one object-storage output, renewed by a thread while held."""

    def __init__(self, url: str, share: str | None = None) -> None:
        self.url = url
        self.taken_over: str | None = None
        self._backend: _Backend = _RedisBackend(url, share) if share else _ObjectBackend(url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, run_id: str) -> None:
        """Take the lock or raise ``LockedError`` naming the run that holds it."""
        mine = holder(run_id)
        refused = self._backend.take(mine)
        if refused is not None:
            raise LockedError(
                f"{self.url} is being written by another batchrun run ({describe(refused)}); "
                "wait for it to finish, or give this run another output.path"
            )
        self.taken_over = self._backend.previous
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and remove the lock."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5)
        self._thread = None
        self._backend.drop()

    def _renew(self) -> None:
        while not self._stop.wait(_RENEW_S):
            self._backend.renew()


class _Backend:
    previous: str | None = None

    def take(self, mine: dict[str, Any]) -> dict[str, Any] | None:
        """Take the lock (None) or return who holds it."""
        raise NotImplementedError

    def renew(self) -> None:
        """Keep the lock alive."""

    def drop(self) -> None:
        """Give the lock up."""


class _ObjectBackend(_Backend):
    """A lock object created with a conditional put, renewed and taken over by e-tag."""

    def __init__(self, url: str) -> None:
        self._store = store_of(url)
        self._key = side_key(split(url)[1], ".lock")
        self._body = b""
        self._etag: str | None = None

    def take(self, mine: dict[str, Any]) -> dict[str, Any] | None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        self._body = json.dumps(mine).encode()
        try:
            self._etag = obstore.put(self._store, self._key, self._body, mode="create")["e_tag"]
            return None
        except AlreadyExistsError:
            pass
        found = obstore.get(self._store, self._key)
        info = _parse(bytes(found.bytes()))
        age = time.time() - found.meta["last_modified"].timestamp()
        if age < LOCK_TTL_S and not gone(info):
            return info
        try:
            mode: Any = {"e_tag": found.meta["e_tag"]}
            self._etag = obstore.put(self._store, self._key, self._body, mode=mode)["e_tag"]
        except PreconditionError:
            return info  # another run took it over first
        self.previous = describe(info)
        return None

    def renew(self) -> None:
        import obstore

        try:
            mode: Any = {"e_tag": self._etag}
            self._etag = obstore.put(self._store, self._key, self._body, mode=mode)["e_tag"]
        except Exception:  # a failed renewal is tried again; a lost lock shows at the end
            return

    def drop(self) -> None:
        import obstore

        try:
            obstore.delete(self._store, self._key)
        except Exception:  # gone already, or the store is away: it expires
            return


# KEYS: the lock. ARGV: this holder, ttl ms, the holder to replace ('' for none).
_TAKE = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
return current
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _RedisBackend(_Backend):
    """A Redis key set only when absent (or held by a dead process of this host)."""

    def __init__(self, url: str, share: str) -> None:
        import hashlib

        import redis

        self._share = share
        self._client: Any = redis.Redis.from_url(
            share, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self._key = "batchrun:lock:" + hashlib.sha256(url.encode()).hexdigest()[:32]
        self._mine = ""

    def take(self, mine: dict[str, Any]) -> dict[str, Any] | None:
        import redis

        self._mine = json.dumps(mine)
        ttl = int(LOCK_TTL_S * 1000)
        try:
            current = self._client.eval(_TAKE, 1, self._key, self._mine, ttl, "")
        except (redis.RedisError, OSError) as exc:
            raise JobError(
                f"cannot reach {describe_url(self._share)} to lock the output ({exc}); "
                "start Redis there, fix the URL, or remove limits.share",
                field="limits.share",
            ) from None
        if current is None:
            return None
        info = _parse(current)
        if not gone(info):
            return info
        if self._client.eval(_TAKE, 1, self._key, self._mine, ttl, current) is not None:
            return info
        self.previous = describe(info)
        return None

    def renew(self) -> None:
        import redis

        try:
            self._client.eval(_RENEW, 1, self._key, self._mine, int(LOCK_TTL_S * 1000))
        except redis.RedisError:
            return

    def drop(self) -> None:
        import redis

        try:
            self._client.eval(_DROP, 1, self._key, self._mine)
        except redis.RedisError:
            return
        finally:
            self._client.close()


def _parse(data: bytes | str) -> dict[str, Any]:
    try:
        info = json.loads(data)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}
