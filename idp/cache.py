"""Per-worker caches of rows that nearly never change (clients, signing keys), dropped by every
worker as soon as an operator changes any of them.

A change bumps a generation mark in the short-lived store once the change has committed
(``changed``); each request reads the mark at most once (``g``), and a cache filled under another
mark starts again empty. A mark that vanished (a Redis restart) reads as a change too. So a disabled
client or a rotated key is seen by every worker on its next request, at the cost of one store read
per request instead of a database query per use; and nothing is kept longer than a minute, whatever
happens to the mark.

While the store is down no change can be announced, and none can be seen: a worker's cache then
keeps what it loads for a few seconds only (``blind_max_age``), so an outage neither sends every use
to the database nor lets a change go unseen by that worker for longer than that. A worker that served
no request during the outage never noticed it; so a process that did announces a new mark as soon as
it reads the store again, and every worker drops what it had (a change committed during the outage
may not have been announced). Only when no serving process met the outage (the store was cut off
from the operator's host alone) does the one-minute backstop apply, or ``flask store drop-caches``,
which a change committed during the outage asks for in the log.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from flask import g, has_app_context
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from idp import state
from idp.db import after_commit

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# This process could not read the mark (or announce a change) since it last read one: once it can,
# it announces a new mark, unless another process did meanwhile (the mark is no longer ``_last_mark``).
_outage_met = False
_last_mark: str | None = None


def generation() -> str | None:
    """The current mark, memoised for the request (one store read however many caches are used);
    None when the store cannot be reached: a request that needs no short-lived state (a refresh
    grant, a portal's error redirect) still works, on caches of a few seconds (``Cache``)."""
    global _outage_met, _last_mark
    if has_app_context() and "cache_generation" in g:
        mark: str | None = g.cache_generation
        return mark
    try:
        found = state.cache_generation.get("generation")
        if found is None:
            # Gone (a Redis restart, an eviction): start a new mark rather than read "none", which
            # caches filled while it was missing before would take for their own.
            state.cache_generation.put_if_absent(state.Generation(secrets.token_hex(8)), "generation")
            found = state.cache_generation.get("generation")
        mark = found.v if found else None
    except RedisError:
        mark = None
        _outage_met = True
    if mark is not None and _outage_met:
        _outage_met = False
        if mark == _last_mark:  # no process has announced anything since: this one does
            mark = _announce_after_outage(mark)
    if mark is not None:
        _last_mark = mark
    if has_app_context():
        g.cache_generation = mark
    return mark


def _announce_after_outage(mark: str) -> str:
    """Back after an outage this process met: a change may have committed meanwhile whose
    announcement was lost, and workers that met no outage would never learn of it. Returns the new
    mark, or ``mark`` when the store takes no writes (a read-only replica): reads go on."""
    new = secrets.token_hex(8)
    try:
        state.cache_generation.put(state.Generation(new), "generation")
    except RedisError as e:
        log.warning("the store is back but takes no writes (%s): caches are not dropped in "
                    "every worker; run `flask store drop-caches` if a portal or key changed",
                    type(e).__name__)
        return mark
    log.info("the store is back: caches dropped in every worker")
    return new


def changed(session: Session | None = None) -> None:
    """Tell every worker to drop its caches once the unit of work commits (a worker that reloaded
    between a bump and the commit would otherwise keep the old row under the new mark)."""
    after_commit(_bump, session)


def watch(maker: sessionmaker[Session], *models: type) -> None:
    """Call ``changed`` for any unit of work that adds, changes or deletes a row of ``models``
    through the ORM (operator commands do; a bulk UPDATE must call ``changed`` itself)."""

    def before_flush(session: Session, _context: object, _instances: object) -> None:
        for row in (*session.new, *session.dirty, *session.deleted):
            if isinstance(row, models):
                changed(session)
                return

    event.listen(maker, "before_flush", before_flush)


def announce() -> None:
    """Tell every worker now to drop its caches (``flask store drop-caches``); raises
    ``RedisError`` when the store cannot be reached."""
    try:
        state.cache_generation.put(state.Generation(secrets.token_hex(8)), "generation")
    finally:
        if has_app_context():
            g.pop("cache_generation", None)


def _bump() -> None:
    global _outage_met
    try:
        announce()
    except RedisError as e:
        # The change has committed; only the news of it is lost. This process, if it serves on,
        # and any worker that met the outage announce a new mark when the store is back; a
        # command that exits now cannot, and nor can anyone if no worker met the outage.
        _outage_met = True
        log.warning("a portal or signing key change committed, but the store could not be told "
                    "(%s): run `flask store drop-caches` once it is back", type(e).__name__)


class Cache(Generic[K, V]):
    """A dictionary valid for one generation; ``None`` results are cached too (an unknown client
    asked for again and again costs no query), up to ``size`` entries, after which it starts again
    (so made-up keys cannot grow it without bound). Without a mark (the store is down) it is valid
    for ``blind_max_age`` seconds, and starts again when the store is back."""

    def __init__(self, size: int = 10_000, max_age: float = 60.0, blind_max_age: float = 5.0) -> None:
        self._size = size
        # A backstop for a mark that was never bumped (a process that died between its commit and
        # the bump, a command pointed at another store): nothing is served older than this.
        self._max_age = max_age
        # How long a change made while the store is down may go unseen; kept for no time at all,
        # every lookup of an outage would be a query.
        self._blind_max_age = blind_max_age
        self._filled = 0.0
        self._mark: str | None = None
        self._values: dict[K, V | None] = {}
        self._lock = threading.Lock()

    def get(self, key: K, load: Callable[[K], V | None]) -> V | None:
        mark = generation()  # None: the store is down, and the values are kept under None
        max_age = self._max_age if mark is not None else self._blind_max_age
        with self._lock:
            if mark != self._mark or time.monotonic() - self._filled > max_age:
                self._values, self._mark, self._filled = {}, mark, time.monotonic()
            elif key in self._values:
                return self._values[key]
            window = self._filled
        value = load(key)
        with self._lock:
            # Only into the window it was loaded for: a load that outlived it (a slow query across
            # an expiry) may hold a row older than the new window's start.
            if mark == self._mark and window == self._filled:
                if len(self._values) >= self._size:
                    self._values = {}
                self._values[key] = value
        return value
