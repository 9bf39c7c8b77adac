"""A token bucket: how the elected replica bounds what it does to the cluster on its own
(evictions a minute, openreports.io Report writes a second), so no change, however large, turns
into a burst of requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class TokenBucket:
    per_second: float  # refill rate
    burst: float  # the most taken at once (the bucket starts full)
    _tokens: float | None = None
    _at: datetime | None = None

    def take(self, now: datetime) -> bool:
        """One token, if there is one now."""
        if self._tokens is None or self._at is None:
            self._tokens = self.burst
        else:
            refill = (now - self._at).total_seconds() * self.per_second
            self._tokens = min(self.burst, self._tokens + refill)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


__all__ = ["TokenBucket"]
