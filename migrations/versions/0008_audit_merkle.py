"""The audit log becomes a Merkle tree log with signed checkpoints, partitioned by month on PostgreSQL

The hash chain is checked one last time and sealed: its row count and head hash go into a first
new event (``audit_chain_sealed``), so whoever kept the chain's head can find it under the first signed
checkpoint. A chain that does not verify stops the migration: a tampered log must not be laundered into
a signed tree. Events move, keeping their ids, into ``audit_event`` partitioned by month of ``at``
(PostgreSQL) with a 64-bit id, without ``prev_hash``/``hash``; the checkpointer folds them into the tree.
Claim releases get a 64-bit id too, and the id of the audit event that records each.

Revision ID: 0008_audit_merkle
Revises: 0007_home_and_delivery
"""

import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from idp.models.base import UTCDateTime

revision: str = '0008_audit_merkle'
down_revision: str | None = '0007_home_and_delivery'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def _chain_content(row: sa.Row) -> str:  # type: ignore[type-arg]
    """The chain's canonical row content, as the release that wrote it computed it."""
    at = row.at
    if isinstance(at, str):  # SQLite hands back text here (no type processing in a bare select)
        at = dt.datetime.fromisoformat(at)
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    details = row.details if not isinstance(row.details, str) else json.loads(row.details)
    return json.dumps({"at": at.isoformat(), "event": row.event, "actor": row.actor,
                       "citizen_id": row.citizen_id, "client_id": row.client_id, "ip": row.ip,
                       "details": details}, sort_keys=True, separators=(",", ":"), default=str)


def _seal_chain(conn: sa.Connection) -> tuple[int, str]:
    prev, count = GENESIS, 0
    rows = conn.execute(sa.text("SELECT id, at, event, actor, citizen_id, client_id, ip, details, "
                                "prev_hash, hash FROM audit_event ORDER BY id"))
    for row in rows:
        computed = hashlib.sha256((prev + _chain_content(row)).encode()).hexdigest()
        if row.prev_hash != prev or row.hash != computed:
            raise RuntimeError(
                f"the audit hash chain is broken at row {row.id}; it is not carried into the new log. "
                "Investigate with the previous release's `flask audit verify` first.")
        prev, count = row.hash, count + 1
    return count, prev


def _months(first: dt.date, last: dt.date) -> list[dt.date]:
    months, n = [], first.year * 12 + first.month - 1
    while n <= last.year * 12 + last.month - 1:
        months.append(dt.date(n // 12, n % 12 + 1, 1))
        n += 1
    return months


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _seal_event(count: int, head: str) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC)
    return {"at": now.replace(microsecond=(now.microsecond // 1000) * 1000),
            "event": "audit_chain_sealed", "actor": "system",
            "details": {"rows": count, "head": head, "chain": "sha256(prev_hash || content)"}}


def upgrade() -> None:
    conn = op.get_bind()
    count, head = _seal_chain(conn)
    if conn.dialect.name == "postgresql":
        _upgrade_postgresql(conn, count, head)
    else:
        _upgrade_sqlite(count, head)

    with op.batch_alter_table('claim_release', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audit_event_id', sa.BigInteger(), nullable=True))
        if conn.dialect.name == "postgresql":
            batch_op.alter_column('id', type_=sa.BigInteger(), existing_type=sa.Integer())

    op.create_table('audit_node',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('index', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('level', 'index', name=op.f('pk_audit_node'))
    )
    op.create_table('audit_checkpoint',
    sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('root_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('verifier_key', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('tree_size', name=op.f('pk_audit_checkpoint'))
    )


def _upgrade_sqlite(count: int, head: str) -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_constraint('uq_audit_event_prev_hash', type_='unique')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('hash')
        batch_op.add_column(sa.Column('leaf_index', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('leaf_hash', sa.LargeBinary(length=32), nullable=True))
        batch_op.create_index('ix_audit_event_leaf_index', ['leaf_index'], unique=False)
        batch_op.create_index('ix_audit_event_pending', ['id'], unique=False,
                              sqlite_where=sa.text('leaf_index IS NULL'))
    _insert_seal(count, head)


def _insert_seal(count: int, head: str) -> None:
    if not count:
        return  # a new installation: there is no chain to seal
    table = sa.table('audit_event', sa.column('at', UTCDateTime()), sa.column('event', sa.String()),
                     sa.column('actor', sa.String()), sa.column('details', sa.JSON()))
    op.get_bind().execute(sa.insert(table).values(**_seal_event(count, head)))


def _upgrade_postgresql(conn: sa.Connection, count: int, head: str) -> None:
    first = conn.execute(sa.text("SELECT min(at) FROM audit_event")).scalar()
    today = dt.datetime.now(dt.UTC).date()
    months = _months((first.date() if first else today).replace(day=1),
                     (_next_month(_next_month(today))))
    op.execute("ALTER TABLE audit_event RENAME TO audit_event_chain")
    op.execute("ALTER TABLE audit_event_chain DROP CONSTRAINT pk_audit_event")
    op.execute("ALTER TABLE audit_event_chain DROP CONSTRAINT uq_audit_event_prev_hash")
    op.execute("DROP INDEX ix_audit_event_event")
    op.execute("DROP INDEX ix_audit_event_citizen_id")
    op.execute("ALTER SEQUENCE audit_event_id_seq OWNED BY NONE")
    op.execute("ALTER SEQUENCE audit_event_id_seq AS bigint")
    op.execute("""
        CREATE TABLE audit_event (
            id bigint NOT NULL DEFAULT nextval('audit_event_id_seq'),
            at timestamp with time zone NOT NULL,
            event varchar(64) NOT NULL,
            actor varchar(100) NOT NULL,
            citizen_id varchar(36),
            client_id varchar(100),
            ip varchar(45),
            details json NOT NULL,
            leaf_index bigint,
            leaf_hash bytea,
            CONSTRAINT pk_audit_event PRIMARY KEY (id, at)
        ) PARTITION BY RANGE (at)""")
    op.execute("CREATE INDEX ix_audit_event_event ON audit_event (event)")
    op.execute("CREATE INDEX ix_audit_event_citizen_id ON audit_event (citizen_id)")
    op.execute("CREATE INDEX ix_audit_event_leaf_index ON audit_event (leaf_index)")
    op.execute("CREATE INDEX ix_audit_event_pending ON audit_event (id) WHERE leaf_index IS NULL")
    op.execute("CREATE TABLE audit_event_default PARTITION OF audit_event DEFAULT")
    for month in months:
        op.execute(f"CREATE TABLE audit_event_{month.year}_{month.month:02d} PARTITION OF audit_event "
                   f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') "
                   f"TO ('{_next_month(month).isoformat()} 00:00:00+00')")
    op.execute("INSERT INTO audit_event (id, at, event, actor, citizen_id, client_id, ip, details) "
               "SELECT id, at, event, actor, citizen_id, client_id, ip, details FROM audit_event_chain "
               "ORDER BY id")
    op.execute("DROP TABLE audit_event_chain")
    op.execute("ALTER SEQUENCE audit_event_id_seq OWNED BY audit_event.id")
    _insert_seal(count, head)


def downgrade() -> None:
    raise NotImplementedError(
        "The Merkle audit log cannot be turned back into the hash chain without breaking the signed "
        "checkpoints that monitors hold; restore the pre-upgrade backup instead.")
