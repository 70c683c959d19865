"""A settable clock for storage and service tests, so timestamps in assertions are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Reads ``now`` (starting at T0); ``advance`` moves it forward."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now
