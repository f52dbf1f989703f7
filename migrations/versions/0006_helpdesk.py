"""The helpdesk (staff, cases, actions, timelines), authenticators in their waiting period, and
portals that serve only in-person-verified citizens

Revision ID: 0006_helpdesk
Revises: 0005_identity_verification
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from idp.models.base import UTCDateTime

revision: str = "0006_helpdesk"
down_revision: str | None = "0005_identity_verification"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('staff',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('nik', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('totp_secret_encrypted', sa.Text(), nullable=True),
    sa.Column('totp_last_step', sa.Integer(), nullable=True),
    sa.Column('enrolment_hash', sa.String(length=64), nullable=True),
    sa.Column('enrolment_expires_at', UTCDateTime(), nullable=True),
    sa.Column('enrolled_at', UTCDateTime(), nullable=True),
    sa.Column('disabled_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
    sa.UniqueConstraint('email', name=op.f('uq_staff_email')),
    sa.UniqueConstraint('enrolment_hash', name=op.f('uq_staff_enrolment_hash'))
    )
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_nik'), ['nik'], unique=False)

    op.create_table('helpdesk_case',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('evidence_checked_at', UTCDateTime(), nullable=True),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('opened_by', sa.Uuid(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('closed_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_helpdesk_case_citizen_id_citizen'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['opened_by'], ['staff.id'], name=op.f('fk_helpdesk_case_opened_by_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_helpdesk_case')),
    sa.UniqueConstraint('reference', name=op.f('uq_helpdesk_case_reference'))
    )
    with op.batch_alter_table('helpdesk_case', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_helpdesk_case_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_helpdesk_case_status'), ['status'], unique=False)

    op.create_table('mfa_factor_waiting',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('factor', sa.String(length=16), nullable=False),
    sa.Column('factor_ref', sa.String(length=64), nullable=False),
    sa.Column('usable_from', UTCDateTime(), nullable=False),
    sa.Column('cancel_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('cancelled_at', UTCDateTime(), nullable=True),
    sa.Column('case_id', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_mfa_factor_waiting_citizen_id_citizen'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_factor_waiting')),
    sa.UniqueConstraint('cancel_hash', name=op.f('uq_mfa_factor_waiting_cancel_hash'))
    )
    with op.batch_alter_table('mfa_factor_waiting', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mfa_factor_waiting_citizen_id'), ['citizen_id'], unique=False)

    op.create_table('helpdesk_action',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('proposed_by', sa.Uuid(), nullable=False),
    sa.Column('approved_by', sa.Uuid(), nullable=True),
    sa.Column('effective_at', UTCDateTime(), nullable=True),
    sa.Column('cancel_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('decided_at', UTCDateTime(), nullable=True),
    sa.Column('done_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['approved_by'], ['staff.id'], name=op.f('fk_helpdesk_action_approved_by_staff')),
    sa.ForeignKeyConstraint(['case_id'], ['helpdesk_case.id'], name=op.f('fk_helpdesk_action_case_id_helpdesk_case'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['proposed_by'], ['staff.id'], name=op.f('fk_helpdesk_action_proposed_by_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_helpdesk_action')),
    sa.UniqueConstraint('cancel_hash', name=op.f('uq_helpdesk_action_cancel_hash'))
    )
    with op.batch_alter_table('helpdesk_action', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_helpdesk_action_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_helpdesk_action_status'), ['status'], unique=False)

    op.create_table('helpdesk_case_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['helpdesk_case.id'], name=op.f('fk_helpdesk_case_event_case_id_helpdesk_case'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_helpdesk_case_event'))
    )
    with op.batch_alter_table('helpdesk_case_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_helpdesk_case_event_case_id'), ['case_id'], unique=False)

    with op.batch_alter_table('oidc_client', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requires_in_person', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('oidc_client', schema=None) as batch_op:
        batch_op.drop_column('requires_in_person')

    with op.batch_alter_table('helpdesk_case_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_helpdesk_case_event_case_id'))

    op.drop_table('helpdesk_case_event')
    with op.batch_alter_table('helpdesk_action', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_helpdesk_action_status'))
        batch_op.drop_index(batch_op.f('ix_helpdesk_action_case_id'))

    op.drop_table('helpdesk_action')
    with op.batch_alter_table('mfa_factor_waiting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mfa_factor_waiting_citizen_id'))

    op.drop_table('mfa_factor_waiting')
    with op.batch_alter_table('helpdesk_case', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_helpdesk_case_status'))
        batch_op.drop_index(batch_op.f('ix_helpdesk_case_citizen_id'))

    op.drop_table('helpdesk_case')
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_nik'))

    op.drop_table('staff')
