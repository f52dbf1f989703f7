"""Audit events are indexed by (event, id), not by event alone

"The newest event of this kind" (the helpdesk's queued log verification, polled every few seconds)
is then one step down an index. With an index on ``event`` alone PostgreSQL may instead walk the
primary key backwards through the whole log looking for a kind that is rare or absent.

Revision ID: 0009_audit_event_by_kind
Revises: 0008_audit_merkle
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0009_audit_event_by_kind'
down_revision: str | None = '0008_audit_merkle'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_audit_event_event_id', 'audit_event', ['event', 'id'])
    op.drop_index('ix_audit_event_event', table_name='audit_event')


def downgrade() -> None:
    op.create_index('ix_audit_event_event', 'audit_event', ['event'])
    op.drop_index('ix_audit_event_event_id', table_name='audit_event')
