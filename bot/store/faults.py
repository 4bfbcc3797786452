"""What a store fault is, and how a long-running loop rides one out.

One place decides which errors mean "the store cannot take this now, try again later" (as
opposed to "this request or entry is wrong"): `store_unavailable`. The HTTP API answers those
with 503 and `Retry-After`, chat with "try again in a while", and the workers back off instead
of counting the entry as failed or ending.

The loops (stream consumers, the scheduler, the privacy sweep) share three small helpers:

- `FaultLog` logs a fault once when it starts and again only when it changes or ends ("store
  back"), not at every retry, so an outage of an hour is a handful of lines, not thousands.
- `Backoff`: bounded exponential delays with full jitter, so processes that lost the store
  together do not all come back in the same millisecond.
- `Heartbeat`: a monotonic stamp a loop renews on every turn, including while it backs off or
  idles between rounds; readiness reads it, so a loop that has ended or is stuck is not alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    ExecAbortError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "BEAT_SECONDS",
    "DEFAULT_STALE_SECONDS",
    "UNAVAILABLE_REPLIES",
    "Backoff",
    "FaultLog",
    "Heartbeat",
    "fault_kind",
    "pause",
    "store_unavailable",
]

# Error replies that say the store cannot take a write (or any command) now, though the request
# is fine: a replica or a master mid-failover, too few replicas, memory full, persistence
# failing, still loading its data, or an ACL that does not (yet) let us in. redis-py strips
# some of these prefixes from the message and names them by class instead; both are checked.
UNAVAILABLE_REPLIES: Final = (
    "READONLY",
    "NOREPLICAS",
    "MASTERDOWN",
    "LOADING",
    "OOM",
    "MISCONF",
    "NOPERM",
)
_UNAVAILABLE_CLASSES: Final = (ReadOnlyError, OutOfMemoryError, NoPermissionError)
# Connection faults: redis-py's own, and the OS's (reset, refused, broken pipe) if one slips by.
_CONNECTION_FAULTS: Final = (RedisConnectionError, RedisTimeoutError, ConnectionError)


# A reply's code where redis-py left it in the message: at its start, or quoted inside the
# note a pipeline adds ("Command # 1 (SET …) of pipeline caused error: ('NOREPLICAS …',)").
_CODE_IN_MESSAGE: Final = re.compile(r"(?:^|[\s('\"])([A-Z]{3,})\s")


def _reply_code(exc: ResponseError) -> str:
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    message = str(exc)
    for found in _CODE_IN_MESSAGE.finditer(message):
        if found.group(1) in UNAVAILABLE_REPLIES:
            return found.group(1)
    first = message.split(" ", 1)[0]
    return first if first.isupper() else ""


def store_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the store cannot serve now and the same call may work later.

    Connection faults and timeouts, and the error replies in `UNAVAILABLE_REPLIES` (also when a
    MULTI/EXEC was aborted because of one, or when the error was raised from one).
    """
    seen = 0
    error: BaseException | None = exc
    while error is not None and seen < 5:
        if isinstance(error, _CONNECTION_FAULTS):
            return True
        if isinstance(error, _UNAVAILABLE_CLASSES):
            return True
        if isinstance(error, ResponseError):
            if _reply_code(error) in UNAVAILABLE_REPLIES:
                return True
            if isinstance(error, ExecAbortError) and any(
                reply in str(error) for reply in UNAVAILABLE_REPLIES
            ):
                return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def fault_kind(exc: BaseException) -> str:
    """A short name that is the same for every repeat of one fault: `NOREPLICAS`,
    `ConnectionError`, `KeyError`. Used to log a fault once and again only when it changes."""
    if isinstance(exc, _UNAVAILABLE_CLASSES):
        return {ReadOnlyError: "READONLY", OutOfMemoryError: "OOM"}.get(type(exc), "NOPERM")
    if isinstance(exc, ResponseError):
        code = _reply_code(exc)
        if code:
            return code
    return type(exc).__name__


class FaultLog:
    """Logs a loop's faults once each: when one starts, when it changes, and when it is over."""

    def __init__(
        self, logger: logging.Logger, what: str, *, repeat_after: float | None = None
    ) -> None:
        self.log = logger
        self.what = what
        # For callers that never see an "ok" (the HTTP API): say a lasting fault again after
        # this many seconds, so the log shows it is still there.
        self.repeat_after = repeat_after
        self.current: str | None = None
        self.repeats = 0
        self._since = 0.0
        self._logged_at = 0.0

    def fault(self, exc: BaseException) -> None:
        """Note a fault; logs only if it differs from the one already logged (or, with
        `repeat_after`, if that one was logged that long ago)."""
        kind = fault_kind(exc)
        now = time.monotonic()
        if kind == self.current:
            self.repeats += 1
            if self.repeat_after is None or now - self._logged_at < self.repeat_after:
                return
        else:
            self.repeats = 0
        if self.current is None:
            self._since = now
        self.current = kind
        self._logged_at = now
        if store_unavailable(exc):
            self.log.warning(
                "%s: store unavailable (%s: %s); backing off and retrying", self.what, kind, exc
            )
        else:
            self.log.error(
                "%s: unexpected error (%s); backing off and going on",
                self.what,
                kind,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    def ok(self) -> None:
        """Note a round that went through; logs "store back" once after a fault."""
        if self.current is None:
            return
        self.log.warning(
            "%s: store back after %.1f s (last fault %s)",
            self.what,
            time.monotonic() - self._since,
            self.current,
        )
        self.current = None


class Backoff:
    """Bounded exponential backoff with full jitter: each delay is uniform in [0, step],
    the step doubling from `base` up to `cap`; `reset()` after a round that went through."""

    def __init__(
        self,
        base: float = 0.2,
        cap: float = 10.0,
        rand: Callable[[], float] = random.random,  # jitter, not a secret
    ) -> None:
        self.base = base
        self.cap = cap
        self.rand = rand
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next try."""
        step: float = min(self.cap, self.base * float(2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        # Never quite zero: a loop must not spin on a store that answers errors at once.
        return max(step * self.rand(), self.base / 4)

    def reset(self) -> None:
        """Start again from `base`."""
        self.attempt = 0


class Heartbeat:
    """A loop's sign of life: running, and the monotonic time of its last turn."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.running = False
        self.at: float | None = None

    def start(self) -> None:
        """The loop has begun."""
        self.running = True
        self.at = self.now()

    def beat(self) -> None:
        """The loop took another turn."""
        self.at = self.now()

    def stop(self) -> None:
        """The loop has ended (however it ended)."""
        self.running = False

    def age(self) -> float | None:
        """Seconds since the last beat, or None if it never beat."""
        return None if self.at is None else self.now() - self.at

    def alive(self, within: float) -> bool:
        """Running, and beaten within the last `within` seconds."""
        age = self.age()
        return self.running and age is not None and age <= within


# A loop that has not taken a turn for this long is stuck (readiness uses the setting
# ANKOMST_WORKER_STALE_SECONDS; this is the default). Longer than any one command may take
# (the socket timeout, 30 s) and than a slow round of the privacy sweep.
DEFAULT_STALE_SECONDS: Final = 300.0

# How often a loop that waits (between rounds, or backing off) beats while it waits.
BEAT_SECONDS: Final = 5.0


async def pause(stopping: asyncio.Event, seconds: float, heartbeat: Heartbeat) -> None:
    """Wait `seconds` or until `stopping` is set, beating at least every `BEAT_SECONDS`."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not stopping.is_set():
        left = until - loop.time()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), min(left, BEAT_SECONDS))
        heartbeat.beat()
