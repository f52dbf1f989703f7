"""The services home (portals' life events, sign-in and complaint addresses, ratings), time zones
and account closure, NIKs unique among open accounts only, and the outbox's delivery state

Revision ID: 0007_home_and_delivery
Revises: 0006_helpdesk
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from idp.models.base import UTCDateTime

revision: str = '0007_home_and_delivery'
down_revision: str | None = '0006_helpdesk'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('account_closure',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('requested_at', UTCDateTime(), nullable=False),
    sa.Column('due_at', UTCDateTime(), nullable=False),
    sa.Column('cancel_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_account_closure_citizen_id_citizen'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_closure')),
    sa.UniqueConstraint('cancel_hash', name=op.f('uq_account_closure_cancel_hash'))
    )
    with op.batch_alter_table('account_closure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_closure_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index('ix_account_closure_due', ['status', 'due_at'], unique=False)
        batch_op.create_index('uq_account_closure_waiting', ['citizen_id'], unique=True,
                              postgresql_where=sa.text("status = 'waiting'"),
                              sqlite_where=sa.text("status = 'waiting'"))

    op.create_table('service_rating',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_service_rating_citizen_id_citizen'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oidc_client.client_id'], name=op.f('fk_service_rating_client_id_oidc_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_rating'))
    )
    with op.batch_alter_table('service_rating', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_rating_client_id'), ['client_id'], unique=False)
        batch_op.create_index('uq_service_rating_month', ['citizen_id', 'client_id', 'month'], unique=True)

    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_zone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('closed_at', UTCDateTime(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_citizen_nik'))
        batch_op.create_index('ix_citizen_nik', ['nik'], unique=False)
        batch_op.create_index('uq_citizen_open_nik', ['nik'], unique=True, postgresql_where=sa.text('closed_at IS NULL'), sqlite_where=sa.text('closed_at IS NULL'))

    with op.batch_alter_table('oidc_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('life_events', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('initiate_login_uri', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('complaint_uri', sa.String(length=500), nullable=True))

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('lease_until', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=255), nullable=True))
        batch_op.create_index('ix_outbox_message_due', ['status', 'next_attempt_at'], unique=False)
    # What a worker marked sent before is sent; the rest is due now.
    outbox = sa.table('outbox_message', sa.column('status', sa.String), sa.column('sent_at', UTCDateTime()),
                      sa.column('created_at', UTCDateTime()), sa.column('next_attempt_at', UTCDateTime()))
    op.execute(outbox.update().where(outbox.c.sent_at.is_not(None)).values(status='sent'))
    op.execute(outbox.update().values(next_attempt_at=outbox.c.created_at))
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.alter_column('next_attempt_at', existing_type=UTCDateTime(), nullable=False)



def downgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_message_due')
        batch_op.drop_column('last_error')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('status')

    with op.batch_alter_table('oidc_client', schema=None) as batch_op:
        batch_op.drop_column('complaint_uri')
        batch_op.drop_column('initiate_login_uri')
        batch_op.drop_column('life_events')

    with op.batch_alter_table('citizen', schema=None) as batch_op:
        batch_op.drop_index('uq_citizen_open_nik', postgresql_where=sa.text('closed_at IS NULL'), sqlite_where=sa.text('closed_at IS NULL'))
        batch_op.drop_index('ix_citizen_nik')
        batch_op.create_index(batch_op.f('ix_citizen_nik'), ['nik'], unique=True)
        batch_op.drop_column('closed_at')
        batch_op.drop_column('time_zone')

    with op.batch_alter_table('service_rating', schema=None) as batch_op:
        batch_op.drop_index('uq_service_rating_month')
        batch_op.drop_index(batch_op.f('ix_service_rating_client_id'))

    op.drop_table('service_rating')
    with op.batch_alter_table('account_closure', schema=None) as batch_op:
        batch_op.drop_index('uq_account_closure_waiting', postgresql_where=sa.text("status = 'waiting'"),
                            sqlite_where=sa.text("status = 'waiting'"))
        batch_op.drop_index('ix_account_closure_due')
        batch_op.drop_index(batch_op.f('ix_account_closure_citizen_id'))

    op.drop_table('account_closure')
