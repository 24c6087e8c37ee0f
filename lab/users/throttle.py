"""What a sign-in may cost before anyone is known: a rate per address and per user name, and a
fixed number of password checks at a time.

- The rates (`LAB_LOGIN_RATE_PER_ADDRESS`, 30 a minute; `LAB_LOGIN_RATE_PER_ACCOUNT`, 10 a
  minute) are moving windows from the `limits` library, kept in this process's memory. The
  account's rate counts the name as typed, whether a user has it or not, so being refused
  tells nothing about which names exist. With several web processes each keeps its own count;
  the lockout after `LAB_MAX_FAILED_LOGINS` wrong passwords is in the database and holds across
  them.
- argon2 is slow and large on purpose, so a flood of sign-ins could take every CPU and thread
  and starve everything else (`/healthz`). At most `LAB_LOGIN_HASH_WORKERS` checks run at once
  on threads of their own; up to `LAB_LOGIN_HASH_QUEUE` more wait for one (waiting holds no
  thread); any beyond that are refused at once (503 with Retry-After) before any work is done.
"""

from __future__ import annotations

import threading

import anyio
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class LoginGuard:
    def __init__(self, *, per_address: int, per_account: int, workers: int, queue: int) -> None:
        self._rates = MovingWindowRateLimiter(MemoryStorage())
        self._per_address = RateLimitItemPerMinute(per_address)
        self._per_account = RateLimitItemPerMinute(per_account)
        self._workers = workers
        self._places = workers + queue
        self._inside = 0
        self._lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None

    def allow(self, address: str, username: str) -> bool:
        """Count one attempt; false when the address or the name has had its share."""
        name = username.strip().casefold()[:64]
        by_address = self._rates.hit(self._per_address, "address", address)
        by_account = self._rates.hit(self._per_account, "account", name)
        return by_address and by_account

    def enter(self) -> bool:
        """Take a place to check a password, or false at once when all are taken."""
        with self._lock:
            if self._inside >= self._places:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1

    def limiter(self) -> anyio.CapacityLimiter:
        """The threads that check passwords (made in the event loop, on first use)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._workers)
        return self._limiter
