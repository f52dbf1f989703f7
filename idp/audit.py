"""The audit log: append-only events under a Merkle tree with signed checkpoints (RFC 9162 style).

An event joins the unit of work that caused it and is inserted when that work commits, a plain insert
that waits on no other writer: a request that fails leaves no audit row of what it did not do.

A checkpointer (``flask audit checkpoint``; one at a time, by an advisory lock) gives each new event
the next leaf index and its leaf hash, SHA-256(0x00 || the event's canonical JSON, a random salt of
its own included, so that a leaf hash seen in a proof cannot be matched against guesses), stores the hash of
every complete aligned subtree of 256 leaves and above (``audit_node``), and signs a checkpoint (tree
size, root hash, time) with a key of its own that the web workers never hold. Changing, deleting or
reordering an event already in the tree changes a root that was signed and published; ``verify``
recomputes every leaf, node and checkpoint. An inclusion proof shows one event is in a checkpointed
tree, a consistency proof that a later tree extends an earlier one (what outside monitors check).

Rows never carry a password, code, token or secret: callers pass names and ids only, and ``append``
refuses detail keys that look like secrets.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, has_request_context, request
from sqlalchemy import Select, and_, bindparam, event, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from idp import merkle, metrics
from idp.db import after_commit, get_session, rowcount, serialize
from idp.models.audit import AuditCheckpoint, AuditEvent, AuditNode
from idp.models.base import utcnow
from idp.models.consent import ClaimRelease
from idp.signed_note import Checkpoint, Signer, Verifier

STORED_LEVEL = 8  # audit_node keeps subtrees of 2**8 = 256 leaves and up
BLOCK = 1 << STORED_LEVEL
SALT_BYTES = 16  # each event's random salt, which its leaf commits to
_CHECKPOINT_LOCK = 0x5A7D_A0D2  # PostgreSQL advisory lock id: one checkpointer at a time
_VERIFY_QUEUE_LOCK = 0x5A7D_A0D3  # requests and claims of verifications, one at a time
_VERIFIER_LOCK = 0x5A7D_A0D4  # held by the one verification running (PostgreSQL)
_PENDING = "audit_pending"  # key of the unit of work's events in Session.info
_RELEASE = "_release"  # marks a pending event that carries a claim_release row
RELEASE_EVENT = "claims_released"
_FORBIDDEN_KEYS = {"password", "code", "secret", "token", "otp", "client_secret", "refresh_token"}


# ---- appending -----------------------------------------------------------------------------------

def client_ip() -> str | None:
    if not has_request_context():
        return None
    return request.remote_addr


def append(
    event: str,
    *,
    actor: str = "system",
    citizen_id: uuid.UUID | str | None = None,
    client_id: str | None = None,
    session: Session | None = None,
    **details: Any,
) -> None:
    """Record an event in the unit of work: it is written when the work commits, and never when
    the work is thrown away (nothing half-written)."""
    if event == RELEASE_EVENT:
        raise ValueError("a release is recorded with audit.release, which also writes its record")
    _queue(event, actor, citizen_id, client_id, session, details)


def _queue(event: str, actor: str, citizen_id: uuid.UUID | str | None, client_id: str | None,
           session: Session | None, details: dict[str, Any], release: bool = False) -> None:
    leaked = _FORBIDDEN_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details may not carry secrets: {sorted(leaked)}")
    now = utcnow()
    row = {
        "at": now.replace(microsecond=(now.microsecond // 1000) * 1000),
        "event": event, "actor": actor, "citizen_id": str(citizen_id) if citizen_id else None,
        "client_id": client_id, "ip": client_ip(), "details": details,
        "salt": secrets.token_bytes(SALT_BYTES),
    }
    if release:
        row[_RELEASE] = True
    (session or get_session()).info.setdefault(_PENDING, []).append(row)


def release(citizen_id: uuid.UUID, client_id: str, channel: str, claims: list[str]) -> None:
    """Record claims handed to a portal: the audit event and the citizen's release record
    (``claim_release``, shown at /account/activity), linked by the event's id so the citizen can be
    shown a proof that the release is in the log."""
    _queue(RELEASE_EVENT, "system", citizen_id, client_id, None,
           {"channel": channel, "claims": claims}, release=True)


def write_pending(session: Session) -> None:
    """``before_commit``: insert the unit of work's events and the release records they carry.

    One statement on PostgreSQL (an INSERT ... RETURNING in a WITH feeding the releases' INSERT):
    a request's audit trail and releases cost one round trip.
    """
    rows: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not rows:
        return
    conn = session.connection()
    releases = [row.pop(_RELEASE, False) for row in rows]
    counts = Counter(row["event"] for row in rows)

    def count() -> None:  # once written for good
        for name, n in counts.items():
            metrics.audit_events(n, name)

    after_commit(count, session)
    if conn.dialect.name == "postgresql" and len(rows) == 1:
        conn.execute(_WRITE_ONE_POSTGRESQL, {**rows[0], "details": json.dumps(rows[0]["details"])})
    elif conn.dialect.name == "postgresql":
        columns = ("at", "event", "actor", "citizen_id", "client_id", "ip", "salt")
        params: dict[str, Any] = {c: [row[c] for row in rows] for c in columns}
        params["details"] = [json.dumps(row["details"]) for row in rows]
        conn.execute(_WRITE_POSTGRESQL, params)
    elif not any(releases):
        conn.execute(insert(AuditEvent), rows)
    else:
        ids = conn.execute(insert(AuditEvent).returning(AuditEvent.id, sort_by_parameter_order=True),
                           rows).scalars().all()
        conn.execute(insert(ClaimRelease), [
            {"citizen_id": uuid.UUID(row["citizen_id"]), "client_id": row["client_id"],
             "channel": row["details"]["channel"], "claims": row["details"]["claims"],
             "released_at": row["at"], "audit_event_id": event_id}
            for row, event_id, is_release in zip(rows, ids, releases, strict=True) if is_release])


# Two statements of one shape each whatever the number of events (arrays, not a VALUES list per
# row), so PostgreSQL prepares each once per connection and SQLAlchemy compiles it once per process.
# Most requests write one event, and plain values cost less to send than seven one-element arrays.
_RELEASES_OF_EV = """
    INSERT INTO claim_release (citizen_id, client_id, channel, claims, released_at, audit_event_id)
    SELECT CAST(citizen_id AS uuid), client_id, details ->> 'channel', details -> 'claims', at, id
    FROM ev WHERE event = '""" + RELEASE_EVENT + "'"
_WRITE_POSTGRESQL = text("""
    WITH ev AS (
        INSERT INTO audit_event (at, event, actor, citizen_id, client_id, ip, details, salt)
        SELECT * FROM unnest(CAST(:at AS timestamptz[]), CAST(:event AS varchar[]),
                             CAST(:actor AS varchar[]), CAST(:citizen_id AS varchar[]),
                             CAST(:client_id AS varchar[]), CAST(:ip AS varchar[]),
                             CAST(:details AS json[]), CAST(:salt AS bytea[]))
        RETURNING id, at, event, citizen_id, client_id, details)""" + _RELEASES_OF_EV)
_WRITE_ONE_POSTGRESQL = text("""
    WITH ev AS (
        INSERT INTO audit_event (at, event, actor, citizen_id, client_id, ip, details, salt)
        VALUES (CAST(:at AS timestamptz), :event, :actor, :citizen_id, :client_id, :ip,
                CAST(:details AS json), :salt)
        RETURNING id, at, event, citizen_id, client_id, details)""" + _RELEASES_OF_EV)


def init_app(maker: sessionmaker[Session]) -> None:
    event.listen(maker, "before_commit", write_pending)


def leaf_data(row: Any, salt: bytes | None = None) -> bytes:
    """The event as its leaf commits to it: canonical JSON of every field, its id included (so a
    citizen holding a proof knows which event it is about), and its salt (hex; ``salt``, or the
    row's) when it has one: events folded before salts keep the leaves they had."""
    fields = {
        "id": row.id,
        "at": row.at.isoformat(),
        "event": row.event,
        "actor": row.actor,
        "citizen_id": row.citizen_id,
        "client_id": row.client_id,
        "ip": row.ip,
        "details": row.details,
    }
    salt = salt if salt is not None else row.salt
    if salt is not None:
        fields["salt"] = bytes(salt).hex()
    return json.dumps(
        fields,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    ).encode()


# ---- the tree as stored --------------------------------------------------------------------------

class Tree:
    """Subtree hashes read from the database: stored nodes for aligned subtrees of 256 leaves and
    up, leaf hashes below that. Memoised for the life of one proof or checkpoint; what a checkpoint
    pass has just computed and written (``written``) is taken from memory, not read back."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._memo: dict[tuple[int, int], bytes] = {}
        self._fresh_from = 0
        self._fresh: list[bytes] = []
        self._nodes: dict[tuple[int, int], bytes] = {}

    def written(self, start: int = 0, leaves: Sequence[bytes] = (),
                nodes: dict[tuple[int, int], bytes] | None = None) -> None:
        """Leaf hashes from index ``start`` on, and stored subtrees ``(level, index)``, that this
        transaction has just written."""
        if leaves:
            self._fresh_from, self._fresh = start, list(leaves)
        self._nodes.update(nodes or {})

    def leaves(self, start: int, end: int) -> list[bytes]:
        if not self._fresh or end <= self._fresh_from:
            return self._stored_leaves(start, end)
        cut = max(start, self._fresh_from)
        fresh = self._fresh[cut - self._fresh_from:end - self._fresh_from]
        if len(fresh) != end - cut:
            raise LookupError(f"audit leaves {cut}..{end - 1} are not all present")
        return (self._stored_leaves(start, cut) if start < cut else []) + fresh

    def _stored_leaves(self, start: int, end: int) -> list[bytes]:
        hashes = list(self.conn.execute(
            select(AuditEvent.leaf_hash)
            .where(AuditEvent.leaf_index >= start, AuditEvent.leaf_index < end)
            .order_by(AuditEvent.leaf_index)).scalars())
        present = [bytes(h) for h in hashes if h is not None]
        if len(present) != end - start:
            raise LookupError(f"audit leaves {start}..{end - 1} are not all present")
        return present

    def node(self, level: int, index: int) -> bytes:
        if (level, index) in self._nodes:
            return self._nodes[(level, index)]
        found = self.conn.execute(select(AuditNode.hash).where(
            AuditNode.level == level, AuditNode.index == index)).scalar()
        if found is None:
            raise LookupError(f"audit node {level}/{index} is missing")
        return bytes(found)

    def subtree(self, start: int, end: int) -> bytes:
        key = (start, end)
        if key not in self._memo:
            self._memo[key] = self._subtree(start, end)
        return self._memo[key]

    def _subtree(self, start: int, end: int) -> bytes:
        n = end - start
        if n >= BLOCK and n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        if n <= BLOCK:
            return merkle.root(self.leaves(start, end))
        k = merkle.split(n)
        return merkle.node_hash(self.subtree(start, start + k), self.subtree(start + k, end))


# ---- checkpoints ---------------------------------------------------------------------------------

def origin_of(issuer: str) -> str:
    """The log's name in its checkpoints: the issuer without scheme, then ``/audit``."""
    return issuer.split("://", 1)[-1].rstrip("/") + "/audit"


@dataclass
class Folded:
    size: int
    added: int
    note: str
    root: bytes


class TamperedLog(RuntimeError):
    """The database no longer holds the tree the checkpointer last signed: nothing is signed."""


def checkpoint(session: Session, signer: Signer, *, batch: int = 50_000,
               last: tuple[int, bytes] | None = None, partitions: bool = True) -> Folded | None:
    """Fold up to ``batch`` new events into the tree and sign the new tree head; with
    ``partitions``, first make the coming months' partitions (PostgreSQL).

    Before signing, the tree in the database must still be the one signed last: the newest
    checkpoint's note must carry this key's signature over its size and root, that root must be what
    the stored leaves and nodes give, and ``last`` (the size and root this checkpointer signed last,
    kept outside the database) must be that checkpoint or an earlier one of the same tree. Otherwise
    ``TamperedLog``: a rolled-back or rewritten tail is never signed over.

    Returns None when another checkpointer holds the lock (it will fold these events), and a Folded
    with ``added == 0`` when there was nothing new. The caller commits.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                            {"k": _CHECKPOINT_LOCK}).scalar():
            return None
        if partitions:
            ensure_partitions(conn, utcnow().date())
    else:
        serialize(session, _CHECKPOINT_LOCK, "audit_checkpoint")
    newest = conn.execute(select(AuditCheckpoint.tree_size, AuditCheckpoint.root_hash,
                                 AuditCheckpoint.note)
                          .order_by(AuditCheckpoint.tree_size.desc()).limit(1)).first()
    head = newest.tree_size if newest else 0
    tree = Tree(conn)
    _check_head(conn, tree, signer, newest, last)
    rows = conn.execute(select(AuditEvent.__table__).where(AuditEvent.leaf_index.is_(None))
                        .order_by(AuditEvent.id).limit(batch)).all()
    if not rows:
        return Folded(head, 0, "", bytes(newest.root_hash) if newest else merkle.EMPTY)
    # On PostgreSQL the key is (id, at), so a row could be slipped in under the id of one already in
    # the tree (on SQLite the id alone is the key). One array, not 50,000 parameters to parse.
    if conn.dialect.name == "postgresql" and conn.execute(_FOLDED_AMONG, {
            "ids": [row.id for row in rows], "lowest": rows[0].id, "highest": rows[-1].id}).first():
        raise TamperedLog("an event waiting for the tree has the id of one already in it")
    size = _fold(conn, tree, head, rows)
    root = tree.subtree(0, size)
    now = utcnow().replace(microsecond=0)
    body = Checkpoint(signer.name, size, root,
                      (f"time {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",)).body()
    note = signer.sign(body)
    conn.execute(insert(AuditCheckpoint).values(tree_size=size, root_hash=root, at=now, note=note,
                                                verifier_key=signer.verifier_key))
    return Folded(size, size - head, note, root)


class Checkpointer:
    """A checkpointer process's passes. The coming months' partitions are made on its first pass
    that holds the lock and then once per UTC day, not on every pass (three queries each)."""

    def __init__(self, signer: Signer, batch: int = 50_000) -> None:
        self.signer, self.batch = signer, batch
        self.partitioned_on: dt.date | None = None

    def fold(self, session: Session, last: tuple[int, bytes] | None = None) -> Folded | None:
        """One pass (``checkpoint``); the caller commits."""
        today = utcnow().date()
        due = self.partitioned_on != today
        folded = checkpoint(session, self.signer, batch=self.batch, last=last, partitions=due)
        if folded is not None and due:
            def made() -> None:
                self.partitioned_on = today

            after_commit(made, session)
        return folded


def _check_head(conn: Connection, tree: Tree, signer: Signer, newest: Any,
                last: tuple[int, bytes] | None) -> None:
    head = newest.tree_size if newest else 0
    if newest is not None:
        body = Verifier.parse(signer.verifier_key).open(newest.note)
        signed = Checkpoint.parse(body) if body else None
        if signed is None or signed.size != head or signed.root != bytes(newest.root_hash):
            raise TamperedLog(f"the newest checkpoint ({head}) is not signed by this key")
        try:
            if tree.subtree(0, head) != signed.root:
                raise TamperedLog(f"the stored tree no longer gives the root signed at {head}")
        except LookupError as e:
            raise TamperedLog(f"the tree signed at {head} is incomplete: {e}") from None
    if last is not None:
        size, root = last
        if size > head:
            raise TamperedLog(f"the log was rolled back: {size} events were signed, {head} remain")
        try:
            if size and tree.subtree(0, size) != root:
                raise TamperedLog(f"the tree signed at {size} was rewritten")
        except LookupError as e:
            raise TamperedLog(f"the tree signed at {size} is incomplete: {e}") from None
    if conn.execute(select(AuditEvent.id).where(AuditEvent.leaf_index >= head).limit(1)).first():
        raise TamperedLog(f"events claim leaf indexes at or beyond the signed size {head}")
    if conn.execute(_nodes_beyond(head)).first():
        raise TamperedLog(f"stored subtrees reach beyond the signed size {head}")


def _nodes_beyond(size: int) -> Select[int, int]:
    """Stored subtrees that reach past leaf ``size``: one primary-key range per level, so the check
    reads the tree's right edge, not the whole node table (it runs before every checkpoint)."""
    edges = [and_(AuditNode.level == level, AuditNode.index >= size >> level)
             for level in range(STORED_LEVEL, 63)]
    return select(AuditNode.level, AuditNode.index).where(or_(*edges)).limit(1)


# Placing a batch in the tree. On PostgreSQL one statement for the whole batch: a statement per
# event (as a pipelined executemany sends) cost PostgreSQL and the checkpointer more than everything
# else in a pass. The batch's bounds keep the join to the waiting events of its partitions (the
# pending index), whatever the planner guesses; without them it chose to scan the whole log.
_PLACE_POSTGRESQL = text("""
    UPDATE audit_event AS e SET leaf_index = v.leaf_index, leaf_hash = v.leaf_hash,
                                salt = coalesce(e.salt, v.salt)
    FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[]), CAST(:indexes AS bigint[]),
                CAST(:hashes AS bytea[]), CAST(:salts AS bytea[])) AS v(id, at, leaf_index, leaf_hash,
                                                                        salt)
    WHERE e.id = v.id AND e.at = v.at AND e.leaf_index IS NULL
      AND e.id BETWEEN :lowest AND :highest AND e.at BETWEEN :earliest AND :latest""")
_FOLDED_AMONG = text("""
    SELECT id FROM audit_event WHERE id BETWEEN :lowest AND :highest
      AND id = ANY(CAST(:ids AS bigint[])) AND leaf_index IS NOT NULL LIMIT 1""")
_PLACE = (update(AuditEvent).where(AuditEvent.id == bindparam("b_id"))
          .values(leaf_index=bindparam("b_index"), leaf_hash=bindparam("b_hash"),
                  salt=func.coalesce(AuditEvent.salt, bindparam("b_salt")))
          .execution_options(synchronize_session=False))


def _fold(conn: Connection, tree: Tree, head: int, rows: Sequence[Any]) -> int:
    """Give ``rows`` leaf indexes from ``head`` on, and store the subtrees they complete. The hashes
    computed here go to ``tree`` as they are: of the stored leaves only those of the first block
    that precede ``head`` are read.

    An event that came without a salt (written by a worker of the release before, during a rolling
    upgrade) is given one here, with its leaf: no event enters the tree unsalted any more."""
    # Only the new salts are sent back (None where the row has its own): most rows have one.
    salts = [None if row.salt is not None else secrets.token_bytes(SALT_BYTES) for row in rows]
    hashes = [merkle.leaf_hash(leaf_data(row, salt)) for row, salt in zip(rows, salts, strict=True)]
    if conn.dialect.name == "postgresql":
        updated = rowcount(conn.execute(_PLACE_POSTGRESQL, {
            "ids": [row.id for row in rows], "ats": [row.at for row in rows],
            "indexes": list(range(head, head + len(rows))), "hashes": hashes, "salts": salts,
            "lowest": rows[0].id, "highest": rows[-1].id,  # ``rows`` come in id order
            "earliest": min(row.at for row in rows), "latest": max(row.at for row in rows)}))
    else:
        updated = rowcount(conn.execute(_PLACE, [
            {"b_id": row.id, "b_index": head + offset, "b_hash": leaf, "b_salt": salt}
            for offset, (row, leaf, salt) in enumerate(zip(rows, hashes, salts, strict=True))]))
    if updated != len(rows):  # the hashes are not read back: each row must have taken its own
        raise TamperedLog(f"events changed or vanished while being folded ({updated} of "
                          f"{len(rows)} took their leaf)")
    size = head + len(rows)
    tree.written(head, hashes)
    made: dict[tuple[int, int], bytes] = {}
    for block in range(head >> STORED_LEVEL, size >> STORED_LEVEL):
        made[(STORED_LEVEL, block)] = merkle.root(tree.leaves(block * BLOCK, (block + 1) * BLOCK))
    level = STORED_LEVEL + 1
    while size >> level:
        for index in range(head >> level, size >> level):
            left = made.get((level - 1, 2 * index)) or tree.node(level - 1, 2 * index)
            right = made.get((level - 1, 2 * index + 1)) or tree.node(level - 1, 2 * index + 1)
            made[(level, index)] = merkle.node_hash(left, right)
        level += 1
    if made:
        conn.execute(insert(AuditNode), [{"level": lv, "index": i, "hash": h}
                                         for (lv, i), h in made.items()])
        tree.written(nodes=made)
    return size


# ---- partitions (PostgreSQL) ---------------------------------------------------------------------

def _month(day: dt.date, ahead: int = 0) -> dt.date:
    months = day.year * 12 + day.month - 1 + ahead
    return dt.date(months // 12, months % 12 + 1, 1)


def partition_name(month: dt.date) -> str:
    return f"audit_event_{month.year}_{month.month:02d}"


_PARTITION_NAME = re.compile(r"audit_event_(\d{4})_(0[1-9]|1[0-2])")


def partitions_end(conn: Connection) -> dt.datetime | None:
    """Where the last monthly partition of ``audit_event`` ends, from the catalog (None when the
    table has none, or is not partitioned): events from then on land in ``audit_event_default``."""
    names = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('audit_event')")).scalars()
    months = [dt.date(int(m[1]), int(m[2]), 1) for m in map(_PARTITION_NAME.fullmatch, names) if m]
    if not months:
        return None
    return dt.datetime.combine(_month(max(months), 1), dt.time(), dt.UTC)


def ensure_partitions(conn: Connection, today: dt.date, ahead: int = 2) -> list[str]:
    """Create the monthly partitions of ``audit_event`` from this month to ``ahead`` months on.

    An event whose month has no partition yet lands in ``audit_event_default``; creating the month
    later moves such rows into it before attaching, so inserts never fail for want of a partition.
    """
    made = []
    for n in range(ahead + 1):
        start, end = _month(today, n), _month(today, n + 1)
        name = partition_name(start)
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
            continue
        bounds = {"a": dt.datetime.combine(start, dt.time(), dt.UTC),
                  "b": dt.datetime.combine(end, dt.time(), dt.UTC)}
        conn.execute(text(f"CREATE TABLE {name} (LIKE audit_event INCLUDING DEFAULTS "
                          "INCLUDING CONSTRAINTS)"))
        conn.execute(text(f"WITH moved AS (DELETE FROM audit_event_default WHERE at >= :a AND at < :b "
                          f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"), bounds)
        conn.execute(text(f"ALTER TABLE audit_event ATTACH PARTITION {name} FOR VALUES FROM "
                          f"('{bounds['a'].isoformat()}') TO ('{bounds['b'].isoformat()}')"))
        made.append(name)
    return made


# ---- proofs --------------------------------------------------------------------------------------

def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


@dataclass
class InclusionProof:
    event_id: int
    leaf: str  # the leaf's data: the event's canonical JSON
    leaf_index: int
    tree_size: int
    path: list[bytes]
    checkpoint: str
    verifier_key: str

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "leaf": self.leaf, "leaf_index": self.leaf_index,
                "tree_size": self.tree_size, "inclusion_path": [_b64(h) for h in self.path],
                "checkpoint": self.checkpoint, "verifier_key": self.verifier_key,
                "hashing": "RFC 9162 §2.1: leaf = SHA-256(0x00 || leaf), node = SHA-256(0x01 || l || r)"}


def trusted_key(session: Session) -> str | None:
    """The verifier key checkpoints are checked against and published with: the configured one
    (``IDP_AUDIT_VERIFIER_KEY``), else the first checkpoint's (trust on first use). Never each
    checkpoint's own stored key: whoever can write the database could re-sign a rewritten tree with
    a key of their own."""
    configured: str | None = current_app.config["IDP"].audit_verifier_key
    if configured:
        return configured
    return session.scalar(select(AuditCheckpoint.verifier_key)
                          .order_by(AuditCheckpoint.tree_size).limit(1))


def inclusion_proof(session: Session, event_id: int, at: dt.datetime | None = None
                    ) -> InclusionProof | None:
    """The event's proof against the latest checkpoint; None if it is not in a checkpoint yet.
    ``at`` pins the event's time too (ids are unique per partition only on PostgreSQL)."""
    stmt = select(AuditEvent).where(AuditEvent.id == event_id, AuditEvent.leaf_index.is_not(None))
    if at is not None:
        stmt = stmt.where(AuditEvent.at == at)
    rows = session.scalars(stmt.limit(2)).all()
    cp = session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1))
    key = trusted_key(session)
    if len(rows) != 1 or cp is None or key is None or (rows[0].leaf_index or 0) >= cp.tree_size:
        return None
    row = rows[0]
    assert row.leaf_index is not None
    try:
        path = merkle.inclusion_path(row.leaf_index, cp.tree_size, Tree(session.connection()).subtree)
    except LookupError:
        return None  # archived: the proof comes from the archive
    return InclusionProof(row.id, leaf_data(row).decode(), row.leaf_index, cp.tree_size, path,
                          cp.note, key)


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    return merkle.consistency_path(old, new, Tree(session.connection()).subtree)


def consistency_json(session: Session, first: AuditCheckpoint, second: AuditCheckpoint
                     ) -> dict[str, Any]:
    """The proof that checkpoint ``first``'s tree is a prefix of ``second``'s, with both notes."""
    path = (consistency_proof(session, first.tree_size, second.tree_size)
            if first.tree_size < second.tree_size else [])
    return {"first": first.tree_size, "second": second.tree_size,
            "consistency_path": [_b64(h) for h in path],
            "first_checkpoint": first.note, "second_checkpoint": second.note}


def checkpoint_at(session: Session, size: int | None = None) -> AuditCheckpoint | None:
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    if size is not None:
        stmt = select(AuditCheckpoint).where(AuditCheckpoint.tree_size == size)
    return session.scalar(stmt)


# ---- verification --------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""
    checkpoints: int = 0
    pending: int = 0
    problems: list[str] = field(default_factory=list)


def _rows(session: Session) -> Iterator[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.leaf_index.is_not(None)).order_by(AuditEvent.leaf_index)
    yield from session.scalars(stmt.execution_options(yield_per=2000))


class VerificationStopped(Exception):
    """The verifier was asked to stop before it had read the whole log."""


@contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """A session on one snapshot of the log (REPEATABLE READ on PostgreSQL)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with Session(bind=conn) as session:
            yield session


class VerifierLock:
    """The lock of the one verification that runs at a time, as this process holds it."""

    #: How often ``alive`` asks the server whether the lock's connection is still there.
    CHECK_EVERY_SECONDS = 10.0

    def __init__(self, held: bool, conn: Connection | None = None) -> None:
        self.held = held
        self._conn = conn
        self._checked = time.monotonic()
        self.lost = False

    def alive(self) -> bool:
        """False once the lock's connection is gone (an idle timeout, a failover): the lock went
        with it, and another verifier may start. Asks the server at most every few seconds."""
        if self._conn is None or self.lost:
            return not self.lost
        if time.monotonic() - self._checked >= self.CHECK_EVERY_SECONDS:
            self._checked = time.monotonic()
            try:
                self._conn.execute(text("SELECT 1"))
            except Exception:
                self.lost = True
        return not self.lost


@contextmanager
def verifier_lock(engine: Engine) -> Iterator[VerifierLock]:
    """The verifier's lock for the block, if free (``held``). On PostgreSQL a transaction lock, in a
    READ COMMITTED transaction kept open and idle: it pins one server connection even behind
    PgBouncer in transaction mode, keeps no snapshot (a verification reading a replica holds nothing
    back on the primary), and ends with the transaction, whether the block ends, raises or its
    process dies. On SQLite, a lock on a file beside the database, which the kernel drops with the
    process that held it."""
    if engine.dialect.name != "postgresql":
        database = engine.url.database
        if not database or database == ":memory:":  # no other process can see this database
            yield VerifierLock(True)
            return
        with open(f"{database}.verifier-lock", "a") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield VerifierLock(False)
                return
            try:
                yield VerifierLock(True)
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:  # closing it rolls back, and so releases the lock
        conn = conn.execution_options(isolation_level="READ COMMITTED")
        held = bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                 {"k": _VERIFIER_LOCK}).scalar())
        yield VerifierLock(held, conn if held else None)


def verify_in(session: Session, pinned: Verifier | None = None,
              stopping: Callable[[], bool] | None = None) -> VerifyResult:
    """Recompute every leaf from its event, every stored node from its children, and every
    checkpoint's root from the leaves, and check each checkpoint's signature against ``pinned``
    (the key a monitor trusts), else ``trusted_key``. Reports the first problem.

    Reads one ``snapshot`` (REPEATABLE READ on PostgreSQL), so a checkpoint committed meanwhile is
    neither half seen nor taken for tampering. Raises VerificationStopped once ``stopping()`` says
    so."""
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)))
    pending = session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.leaf_index.is_(None))) or 0
    result = VerifyResult(True, 0, pending=pending)

    def fail(reason: str, event_id: int | None = None) -> VerifyResult:
        result.ok, result.reason, result.broken_id = False, reason, event_id
        return result

    if pinned is None:
        trusted = trusted_key(session)
        if trusted is None and checkpoints:
            return fail("no verifier key to check the checkpoints against")
        pinned = Verifier.parse(trusted) if trusted else None
    due = iter(checkpoints)
    cp = next(due, None)
    compact = merkle.CompactRange()
    block: list[bytes] = []
    stored = iter(session.execute(
        select(AuditNode.index, AuditNode.hash).where(AuditNode.level == STORED_LEVEL)
        .order_by(AuditNode.index).execution_options(yield_per=2000)))
    for row in _rows(session):
        expected = compact.size
        if stopping is not None and not expected % 4096 and stopping():
            raise VerificationStopped(f"stopped after {expected} events")
        if row.leaf_index != expected:
            what = (f"leaf {expected} is missing (deleted)" if (row.leaf_index or 0) > expected
                    else f"leaf {row.leaf_index} appears twice")
            return fail(what, row.id)
        computed = merkle.leaf_hash(leaf_data(row))
        if row.leaf_hash is None or bytes(row.leaf_hash) != computed:
            return fail(f"event {row.id} (leaf {expected}): content does not match its leaf hash",
                        row.id)
        compact.append(computed)
        block.append(computed)
        if len(block) == BLOCK:
            node = next(stored, None)
            if node is None or node[0] != expected >> STORED_LEVEL or \
                    bytes(node[1]) != merkle.root(block):
                return fail(f"leaves {expected + 1 - BLOCK}..{expected} do not match their stored "
                            "subtree", row.id)
            block = []
        while cp is not None and cp.tree_size == compact.size:
            problem = _check_checkpoint(cp, compact.root(), pinned)
            if problem:
                return fail(problem, row.id)
            result.checkpoints += 1
            cp = next(due, None)
        result.checked = compact.size
    if cp is not None:
        return fail(f"checkpoint of size {cp.tree_size} covers leaves that are missing "
                    f"(found {compact.size})")
    if checkpoints and compact.size != checkpoints[-1].tree_size:
        return fail(f"{compact.size - checkpoints[-1].tree_size} leaves are not under a checkpoint")
    problem = _check_nodes(session, compact.size)
    if problem:
        return fail(problem)
    return result


def _check_checkpoint(cp: AuditCheckpoint, computed: bytes, key: Verifier | None) -> str:
    if bytes(cp.root_hash) != computed:
        return f"checkpoint of size {cp.tree_size}: the leaves give another root (changed or reordered)"
    body = key.open(cp.note) if key else None
    if key is None or body is None:
        name = key.name if key else "no key"
        return f"checkpoint of size {cp.tree_size}: signature does not verify with {name}"
    try:
        signed = Checkpoint.parse(body)
    except ValueError:
        return f"checkpoint of size {cp.tree_size}: the signed note is not a checkpoint"
    if signed.size != cp.tree_size or signed.root != computed:
        return f"checkpoint of size {cp.tree_size}: the signed note states another tree"
    return ""


def _check_nodes(session: Session, size: int, chunk: int = 4096) -> str:
    """Each stored node above the bottom stored level is the hash of its two stored children (the
    bottom level was checked against the leaves), and none reaches beyond the tree. Read a chunk of
    parents and their children at a time: memory stays flat however large the log."""
    beyond = session.execute(_nodes_beyond(size)).first()
    if beyond is not None:
        return f"stored subtree {beyond[0]}/{beyond[1]} reaches beyond the tree ({size} leaves)"
    level = STORED_LEVEL + 1
    while size >> level:
        for start in range(0, size >> level, chunk):
            end = min(start + chunk, size >> level)
            parents = session.execute(select(AuditNode.index, AuditNode.hash).where(
                AuditNode.level == level, AuditNode.index >= start, AuditNode.index < end)).all()
            children = dict(session.execute(select(AuditNode.index, AuditNode.hash).where(
                AuditNode.level == level - 1, AuditNode.index >= 2 * start,
                AuditNode.index < 2 * end)).all())
            if len(parents) != end - start:
                return f"stored subtrees of level {level} between {start} and {end} are missing"
            for index, value in parents:
                left, right = children.get(2 * index), children.get(2 * index + 1)
                if left is None or right is None or \
                        merkle.node_hash(bytes(left), bytes(right)) != bytes(value):
                    return f"stored subtree {level}/{index} does not match its children"
        level += 1
    return ""


# ---- verification on request (the helpdesk) ------------------------------------------------------
#
# A full verification reads the whole log, far longer than a web request may take. An officer's
# request is an audit event; a verifier (the checkpointer's thread, or ``flask audit verify
# --queued``) claims it with another event, runs it on a snapshot and records the outcome as a third.
# The log is the queue: durable, and every step of it on the record.

VERIFY_REQUESTED = "audit_verify_requested"
VERIFY_STARTED = "audit_verify_started"
VERIFIED = "audit_verified"
VERIFY_STOPPED = "audit_verify_stopped"


@dataclass
class Verification:
    """A requested verification, as its events tell it."""

    request_id: int
    requested_at: dt.datetime
    requested_by: str  # the request's actor
    state: str = "queued"  # then running, and passed, failed or stopped
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    outcome: dict[str, Any] = field(default_factory=dict)  # the last event's details


def newest(session: Session, event: str) -> Any:
    """The newest event of one kind (id, at, actor, details), or None: one step down the
    (event, id) index, however large the log and however rare the kind."""
    return session.execute(select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.details)
                           .where(AuditEvent.event == event)
                           .order_by(AuditEvent.id.desc()).limit(1)).first()


def queued_request(session: Session) -> int | None:
    """The request waiting for a verifier, if any. Requests and starts are written under one lock
    and a request is added only when none waits, so one waits exactly when the newest request is
    newer than the newest start."""
    request, started = newest(session, VERIFY_REQUESTED), newest(session, VERIFY_STARTED)
    if request is None or (started is not None and started.id > request.id):
        return None
    return int(request.id)


def request_verification(session: Session, actor: str) -> bool:
    """Queue a verification of the whole log; False, recording nothing, when one is queued
    already. The caller commits."""
    serialize(session, _VERIFY_QUEUE_LOCK, AuditEvent.__tablename__)
    if queued_request(session) is not None:
        return False
    append(VERIFY_REQUESTED, actor=actor, session=session)
    return True


def claim_verification(session: Session, *, close_interrupted: bool = False) -> int | None:
    """Record the queued request as started and return its id (None: nothing queued). With
    ``close_interrupted`` (the caller holds the verifier's lock, so none runs) a verification that
    started and never finished, its process gone, is first recorded as stopped. The caller commits."""
    serialize(session, _VERIFY_QUEUE_LOCK, AuditEvent.__tablename__)
    if close_interrupted:
        _close_interrupted(session)
    request_id = queued_request(session)
    if request_id is not None:
        append(VERIFY_STARTED, session=session, request=request_id)
    return request_id


def _close_interrupted(session: Session) -> None:
    # Each claim closes the one before it, so only the newest start can be unfinished.
    started = newest(session, VERIFY_STARTED)
    if started is None:
        return
    request_id = started.details.get("request")
    ends = session.scalars(select(AuditEvent.details).where(
        AuditEvent.event.in_((VERIFIED, VERIFY_STOPPED)), AuditEvent.id > started.id))
    if not any(details.get("request") == request_id for details in ends):
        verification_stopped(session, request_id, "interrupted")


def verification_finished(session: Session, request_id: int, result: VerifyResult) -> None:
    append(VERIFIED, session=session, request=request_id, ok=result.ok, checked=result.checked,
           checkpoints=result.checkpoints, pending=result.pending, broken_id=result.broken_id,
           reason=result.reason)


def verification_stopped(session: Session, request_id: int, reason: str) -> None:
    """``reason``: "stopped" (its process was told to stop), "interrupted" (its process ended
    unannounced), or the name of the error that ended it."""
    append(VERIFY_STOPPED, session=session, request=request_id, reason=reason)


def latest_verification(session: Session) -> Verification | None:
    request = newest(session, VERIFY_REQUESTED)
    if request is None:
        return None
    found = Verification(request.id, request.at, request.actor)
    steps = session.execute(select(AuditEvent.event, AuditEvent.at, AuditEvent.details).where(
        AuditEvent.event.in_((VERIFY_STARTED, VERIFIED, VERIFY_STOPPED)),
        AuditEvent.id > request.id).order_by(AuditEvent.id))
    for name, at, details in steps:
        if details.get("request") != request.id or found.state in ("passed", "failed"):
            continue
        if name == VERIFY_STARTED:
            found.state, found.started_at = "running", at
        else:  # an outcome after a stop wins: the stop was recorded by mistake
            found.state = "stopped" if name == VERIFY_STOPPED else \
                "passed" if details.get("ok") else "failed"
            found.finished_at, found.outcome = at, details
    return found
