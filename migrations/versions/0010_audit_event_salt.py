"""Audit events carry a random salt that their leaf commits to

A leaf hash published in a proof (a consistency proof's edge, the neighbour in a citizen's
inclusion proof) could otherwise be matched against guesses: an event's fields are a citizen id, a
time to the millisecond, an address and a few known values. With 128 random bits in the leaf there
is nothing to guess against. Events written before keep no salt, and their leaves stay as they were.
Adding a nullable column without a default changes only the catalog, also on the partitioned table.

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
    op.add_column('audit_event', sa.Column('salt', sa.LargeBinary(16), nullable=True))


def downgrade() -> None:
    op.drop_column('audit_event', 'salt')
