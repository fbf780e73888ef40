"""Limits shared by every process on one key: ``limits.share`` (a Redis URL).

``SharedLimits`` is the limiter's ``Shared`` hook. Each request, after the
process's own limiter let it go, takes a concurrency lease and a place on
the rate schedule in Redis, both by scripts Redis runs atomically:

* concurrency: a sorted set of leases per scope (the key, and the model),
  each with an expiry; a lease is renewed while its request is out, so a
  process killed with ``kill -9`` frees its places when its leases expire.
* rate: the generic cell rate algorithm on Redis's own clock. The script
  reserves the next free slot on the scope's schedule (requests and
  tokens a minute, the pace a process learned, a Retry-After pause) and
  answers how long to wait for it.

What one process learns, a 429's Retry-After and a learned pace, is written
to the same keys, so every process keeps it. Scope names are a hash of the
base URL, the key and the model: the key itself never reaches Redis.

Redis unreachable at start: ``connect`` raises ``JobError`` (exit 2, nothing
sent). Lost mid-run: nothing is sent until it answers again (never beyond a
limit); calls retry with backoff, and ``waited_s`` says how long sending
waited. The last slot this process saw is passed with each reservation, so
a Redis that comes back empty cannot hand out slots already given.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from batchrun.config import Job
from batchrun.errors import JobError
from batchrun.redact import describe_url, register

T = TypeVar("T")

# A lease lives this long unless renewed; renewed every third of it.
LEASE_TTL_MS = 30_000
# Waiting for a concurrency place: the first and the longest pause between tries.
_POLL_MIN_S = 0.002
_POLL_MAX_S = 0.05
# Redis lost: the first and the longest pause between reconnection attempts.
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 2.0
# Processes on several hosts wake and send with some jitter: the shared schedule keeps
# this fraction of a declared rate, so two requests never fall in one gateway slot.
_MARGIN = 0.97
# A slot woken up for later than this fraction of the rate's interval is taken again.
_LATE_FRACTION = 0.5
_SCHEDULE = ("rpm", "tpm", "learned", "pause")
# Any Redis error mid-run is waited out like a lost connection (a restarting Redis answers
# LOADING, scripts must be loaded again): sending holds, it never goes unlimited or crashes.
_LOST = (RedisError, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# Both scopes (the model's, then the key's) in one step, so a slot is never held while the
# other scope is asked. KEYS, per scope: rpm schedule, tpm schedule, learned interval, pause
# (all in microseconds). ARGV: per scope rpm and tpm intervals; then tokens, and the floor
# (the latest slot this client saw). Returns: {wait in µs, new end of schedule in µs}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local start = math.max(now, tonumber(ARGV[6]))
local intervals = {}
for s = 0, 1 do
  local rpm_i = tonumber(ARGV[s * 2 + 1])
  local learned = tonumber(redis.call('GET', KEYS[s * 4 + 3]) or '0')
  if learned > rpm_i then rpm_i = learned end
  intervals[s * 2 + 1] = rpm_i
  intervals[s * 2 + 2] = tonumber(ARGV[s * 2 + 2]) * tonumber(ARGV[5])
  for k = 1, 4 do
    if k ~= 3 then
      start = math.max(start, tonumber(redis.call('GET', KEYS[s * 4 + k]) or '0'))
    end
  end
end
local finish = start
for s = 0, 1 do
  for k = 1, 2 do
    local interval = intervals[s * 2 + k]
    if interval > 0 then
      local ends = start + interval
      local ttl = math.floor((ends - now) / 1000) + 60000
      redis.call('SET', KEYS[s * 4 + k], string.format('%d', ends), 'PX', ttl)
      if ends > finish then finish = ends end
    end
  end
end
return {string.format('%d', start - now), string.format('%d', finish)}
"""

# KEYS: the key's leases, the model's leases. ARGV: key cap, model cap, ttl ms, lease id.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
local expiry = now + tonumber(ARGV[3])
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], expiry, ARGV[4])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3]) * 2)
end
return 1
"""

# KEYS: the lease sets to renew ``ARGV[2]`` in. ARGV: ttl ms, lease id.
_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], expiry, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) * 2)
end
return 1
"""

# KEYS: pause key, learned interval key. ARGV: pause seconds (or ''), learned µs (or '').
_LEARN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] ~= '' then
  local until_ = now + math.floor(tonumber(ARGV[1]) * 1000000)
  if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
    local ttl = math.floor(tonumber(ARGV[1]) * 1000) + 1000
    redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', ttl)
  end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'EX', 600) end
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 86400)
return 1
"""


@dataclass(frozen=True)
class SharedScope:
    """One scope's declared limits and its Redis key prefix."""

    prefix: str
    concurrency: int
    rpm: float | None
    tpm: float | None

    def key(self, part: str) -> str:
        """The Redis key of ``part`` (``rpm``, ``tpm``, ``learned``, ``pause``, ``leases``)."""
        return f"{self.prefix}:{part}"

    def interval_us(self, per_minute: float | None) -> int:
        """Microseconds a unit takes at ``per_minute`` less the margin (0 when not declared)."""
        return int(60_000_000 / (per_minute * _MARGIN)) if per_minute else 0


def scope_prefix(base_url: str, api_key: str | None, model: str | None) -> str:
    """The Redis name of a scope: a hash of base URL, key and model (never the key)."""
    digest = hashlib.sha256(
        "\0".join((base_url.rstrip("/"), api_key or "", model or "")).encode()
    ).hexdigest()[:32]
    return f"batchrun:{digest}"


def shared_limits(job: Job, base_url: str | None, api_key: str | None) -> SharedLimits | None:
    """The shared limits of ``job`` (None without ``limits.share``), as ``build_limiter`` sets."""
    limits = job.limits
    if limits.share is None:
        return None
    url = base_url or "mock"
    key = SharedScope(scope_prefix(url, api_key, None), limits.concurrency, limits.rpm, limits.tpm)
    models = {
        model.name: SharedScope(
            scope_prefix(url, api_key, model.id),
            min(model.concurrency or limits.concurrency, limits.concurrency),
            model.rpm,
            model.tpm,
        )
        for model in job.models
    }
    return SharedLimits(limits.share, key, models)


async def open_shared(
    job: Job, base_url: str | None, api_key: str | None, pending: int
) -> SharedLimits | None:
    """The job's shared limits, connected (``JobError`` if Redis is away); None if unshared.

    Nothing to send needs no Redis: a rerun of a finished job runs without it.
    """
    shared = shared_limits(job, base_url, api_key) if pending else None
    if shared is not None:
        await shared.connect()
    return shared


class SharedLimits:
    """The limits of one key and its models, kept in Redis for every process that uses it."""

    def __init__(self, url: str, key: SharedScope, models: dict[str, SharedScope]) -> None:
        self.url = url
        self.key = key
        self.models = models
        self.waited_s = 0.0
        self._client: Any = aioredis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=0
        )
        self._reserve = self._client.register_script(_RESERVE)
        self._lease = self._client.register_script(_LEASE)
        self._learn = self._client.register_script(_LEARN)
        self._renew_script = self._client.register_script(_RENEW)
        self._ids = itertools.count()
        self._who = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self._held: dict[str, str] = {}
        self._seen: dict[str, int] = {}
        self._down_since: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None
        password = urlsplit(url).password
        register(password)

    async def connect(self) -> None:
        """Check that Redis answers; ``JobError`` (exit 2) naming the URL if not."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise JobError(
                f"cannot reach {describe_url(self.url)} ({_reason(exc)}); start Redis there, "
                "fix the URL, or remove limits.share to pace this process alone",
                field="limits.share",
            ) from None
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def close(self) -> float:
        """Stop renewing leases and close the connection; the seconds Redis was away."""
        if self._renewer is not None:
            self._renewer.cancel()
        if self._tasks:
            # Releases and news still on their way get a moment to arrive.
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()
        return self.waited_s

    async def acquire(self, model: str, tokens: float) -> str:
        """Wait for a shared concurrency place and a shared slot for one request; its lease."""
        scope = self.models[model]
        lease = f"{self._who}:{next(self._ids)}"
        keys = [self.key.key("leases"), scope.key("leases")]
        args: list[str | int] = [self.key.concurrency, scope.concurrency, LEASE_TTL_MS, lease]
        pause = _POLL_MIN_S
        while not await self._retrying(lambda: self._lease(keys=keys, args=args)):
            await asyncio.sleep(pause)
            pause = min(_POLL_MAX_S, pause * 2)
        self._held[lease] = model
        try:
            await self._slot(scope, tokens)
        except BaseException:
            self.release(lease)
            raise
        return lease

    async def _slot(self, scope: SharedScope, tokens: float) -> None:
        """Reserve the next slot of ``scope`` and the key in Redis, and sleep until it.

        A slot woken up for too late (a busy host, a Redis that was away) is
        given up and another taken, so late requests never bunch up beyond
        the limit.
        """
        keys = [each.key(p) for each in (scope, self.key) for p in _SCHEDULE]
        fastest = min(
            (i for i in (scope.interval_us(scope.rpm), self.key.interval_us(self.key.rpm)) if i),
            default=0,
        )
        late_s = _LATE_FRACTION * fastest / 1e6
        floor = scope.prefix
        while True:
            args = [
                scope.interval_us(scope.rpm),
                scope.interval_us(scope.tpm),
                self.key.interval_us(self.key.rpm),
                self.key.interval_us(self.key.tpm),
                max(1, round(tokens)),
                self._seen.get(floor, 0),
            ]
            wait_us, finish = await self._retrying(partial(self._reserve, keys=keys, args=args))
            due = time.monotonic() + int(wait_us) / 1e6
            self._seen[floor] = max(self._seen.get(floor, 0), int(finish))
            if int(wait_us) > 0:
                await asyncio.sleep(int(wait_us) / 1e6)
            if late_s <= 0 or time.monotonic() - due <= late_s:
                return

    def release(self, lease: str) -> None:
        """Give a lease back (in the background; an unreachable Redis lets it expire)."""
        model = self._held.pop(lease, None)
        if model is None:
            return
        keys = (self.key.key("leases"), self.models[model].key("leases"))
        self._spawn(
            lambda: self._client.zrem(keys[0], lease), lambda: self._client.zrem(keys[1], lease)
        )

    def limited(self, model: str, retry_after: float | None, learned_rpm: float | None) -> None:
        """Tell every process of a 429: the pause it asked for, the pace this process learned."""
        scope = self.models[model]
        for each in (scope, self.key):
            learned = str(each.interval_us(learned_rpm)) if learned_rpm and each is scope else ""
            pause = "" if retry_after is None else repr(retry_after)
            keys = [each.key("pause"), each.key("learned"), each.key("rate_limited")]
            self._spawn(partial(self._learn, keys=keys, args=[pause, learned]))

    def _spawn(self, *calls: Callable[[], Awaitable[Any]]) -> None:
        """Make ``calls`` one after another in the background; a lost Redis drops them."""

        async def run() -> None:
            for call in calls:
                try:
                    await call()
                except (RedisError, OSError):
                    return

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried with backoff while Redis is unreachable (the wait is counted)."""
        pause = _BACKOFF_MIN_S
        while True:
            try:
                result = await call()
            except _LOST:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                await asyncio.sleep(pause)
                pause = min(_BACKOFF_MAX_S, pause * 2)
                continue
            if self._down_since is not None:
                self.waited_s += time.monotonic() - self._down_since
                self._down_since = None
                await self._renew()
            return result

    async def _renew(self) -> None:
        """Write every lease still held back with a fresh expiry (also after Redis restarted)."""
        try:
            for lease, model in list(self._held.items()):
                keys = [self.key.key("leases"), self.models[model].key("leases")]
                await self._renew_script(keys=keys, args=[LEASE_TTL_MS, lease])
        except (RedisError, OSError):
            return

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_MS / 3000)
            if self._held:
                await self._renew()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
