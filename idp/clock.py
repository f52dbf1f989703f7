"""The time of day SatuID decides by, for what waits in days: cooling-off periods and waiting periods.

Everything that waits for a day or more reads the clock here, so a test can move it forward
(``advance``) and see a change take effect without waiting; short lifetimes (sessions, codes) keep
to the store's own expiry.
"""

from __future__ import annotations

import datetime as dt
import time as _time

_offset = 0.0  # seconds added to the system clock; only tests move it


def time() -> float:
    return _time.time() + _offset


def now() -> dt.datetime:
    return dt.datetime.fromtimestamp(time(), dt.UTC)


def advance(seconds: float) -> None:
    """Move the clock forward (tests)."""
    global _offset
    _offset += seconds


def reset() -> None:
    global _offset
    _offset = 0.0
