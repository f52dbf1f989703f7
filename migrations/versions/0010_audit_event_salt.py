"""Audit events carry a random salt that their leaf commits to

A leaf hash published in a proof (a consistency proof's edge, the neighbour in a citizen's
inclusion proof) could otherwise be matched against guesses: an event's fields are a citizen id, a
time to the millisecond, an address and a few known values. With 128 random bits in the leaf there
is nothing to guess against. Events folded before keep no salt, and their leaves stay as they were.

Adding a nullable column without a default changes only the catalog, also on the partitioned table,
but it needs a moment's exclusive lock on every partition, and while it waits for one every audit
write queues behind it: it gives up after a few seconds instead (a long checkpointer pass or
verification holds the log), to be run again, ideally with both stopped.

Revision ID: 0010_audit_event_salt
Revises: 0009_audit_event_by_kind
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_audit_event_salt'
down_revision: str | None = '0009_audit_event_by_kind'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column('audit_event', sa.Column('salt', sa.LargeBinary(16), nullable=True))


def downgrade() -> None:
    # Without the salts every salted leaf would stop matching its event, and `audit verify` would
    # report the whole log since this release as tampered with.
    raise RuntimeError("0010_audit_event_salt cannot be undone: the audit log's leaves commit to "
                       "the salts; downgrade the code and keep the column")
