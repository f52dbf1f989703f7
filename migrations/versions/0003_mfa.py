"""Second factors: TOTP, passkeys, recovery codes

Revision ID: 0003_mfa
Revises: 0002_oidc
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.models.base

revision: str = "0003_mfa"
down_revision: str | None = "0002_oidc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mfa_totp',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('confirmed_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_mfa_totp_citizen_id_citizen'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_totp')),
    sa.UniqueConstraint('citizen_id', name=op.f('uq_mfa_totp_citizen_id'))
    )
    op.create_table('mfa_passkey',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('credential_id', sa.LargeBinary(length=1024), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('sign_count', sa.Integer(), nullable=False),
    sa.Column('transports', sa.JSON(), nullable=False),
    sa.Column('device_type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_mfa_passkey_citizen_id_citizen'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_passkey')),
    sa.UniqueConstraint('credential_id', name=op.f('uq_mfa_passkey_credential_id'))
    )
    with op.batch_alter_table('mfa_passkey', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mfa_passkey_citizen_id'), ['citizen_id'], unique=False)

    op.create_table('mfa_recovery_code',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_mfa_recovery_code_citizen_id_citizen'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mfa_recovery_code')),
    sa.UniqueConstraint('citizen_id', 'code_hash', name='uq_mfa_recovery_code_citizen_hash')
    )
    with op.batch_alter_table('mfa_recovery_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mfa_recovery_code_citizen_id'), ['citizen_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mfa_recovery_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mfa_recovery_code_citizen_id'))
    op.drop_table('mfa_recovery_code')
    with op.batch_alter_table('mfa_passkey', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mfa_passkey_citizen_id'))
    op.drop_table('mfa_passkey')
    op.drop_table('mfa_totp')
