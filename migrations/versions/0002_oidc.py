"""OpenID Connect provider: clients, keys, grants, tokens, consent, logout

Revision ID: 0002_oidc
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.models.base

revision: str = "0002_oidc"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('oidc_client',
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('logo_uri', sa.String(length=500), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('category', sa.String(length=100), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=True),
    sa.Column('redirect_uris', sa.JSON(), nullable=False),
    sa.Column('post_logout_redirect_uris', sa.JSON(), nullable=False),
    sa.Column('sector_identifier', sa.String(length=255), nullable=True),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('token_endpoint_auth_method', sa.String(length=32), nullable=False),
    sa.Column('jwks', sa.JSON(), nullable=True),
    sa.Column('jwks_uri', sa.String(length=500), nullable=True),
    sa.Column('backchannel_logout_uri', sa.String(length=500), nullable=True),
    sa.Column('id_token_signed_response_alg', sa.String(length=8), nullable=False),
    sa.Column('minimum_loa', sa.Integer(), nullable=False),
    sa.Column('accepted_factors', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_oidc_client'))
    )
    op.create_table('oidc_logout_delivery',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('citizen_id', sa.String(length=36), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('uri', sa.String(length=500), nullable=False),
    sa.Column('logout_token', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_logout_delivery'))
    )
    with op.batch_alter_table('oidc_logout_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_logout_delivery_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_logout_delivery_status'), ['status'], unique=False)

    op.create_table('oidc_signing_key',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('private_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('activated_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retired_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_oidc_signing_key'))
    )
    with op.batch_alter_table('oidc_signing_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_signing_key_state'), ['state'], unique=False)

    op.create_table('claim_release',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('claims', sa.JSON(), nullable=False),
    sa.Column('released_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_claim_release_citizen_id_citizen'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oidc_client.client_id'], name=op.f('fk_claim_release_client_id_oidc_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_release'))
    )
    with op.batch_alter_table('claim_release', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claim_release_citizen_id'), ['citizen_id'], unique=False)

    op.create_table('consent_record',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('claims', sa.JSON(), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_consent_record_citizen_id_citizen'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oidc_client.client_id'], name=op.f('fk_consent_record_client_id_oidc_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_record'))
    )
    with op.batch_alter_table('consent_record', schema=None) as batch_op:
        batch_op.create_index('ix_consent_record_citizen_client', ['citizen_id', 'client_id'], unique=False)

    op.create_table('oidc_grant',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('created_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['citizen_id'], ['citizen.id'], name=op.f('fk_oidc_grant_citizen_id_citizen'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['oidc_client.client_id'], name=op.f('fk_oidc_grant_client_id_oidc_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_grant'))
    )
    with op.batch_alter_table('oidc_grant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_grant_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_grant_client_id'), ['client_id'], unique=False)

    op.create_table('oidc_token',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('grant_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('citizen_id', sa.Uuid(), nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('claims_request', sa.JSON(), nullable=True),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('acr', sa.Integer(), nullable=False),
    sa.Column('amr', sa.JSON(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('issued_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('access_expires_at', idp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('access_revoked_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refresh_hash', sa.String(length=64), nullable=True),
    sa.Column('refresh_expires_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refresh_used_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refresh_revoked_at', idp.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['grant_id'], ['oidc_grant.id'], name=op.f('fk_oidc_token_grant_id_oidc_grant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_token')),
    sa.UniqueConstraint('jti', name=op.f('uq_oidc_token_jti')),
    sa.UniqueConstraint('refresh_hash', name=op.f('uq_oidc_token_refresh_hash'))
    )
    with op.batch_alter_table('oidc_token', schema=None) as batch_op:
        batch_op.create_index('ix_oidc_token_citizen_client', ['citizen_id', 'client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_token_citizen_id'), ['citizen_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oidc_token_grant_id'), ['grant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oidc_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_token_grant_id'))
        batch_op.drop_index(batch_op.f('ix_oidc_token_citizen_id'))
        batch_op.drop_index('ix_oidc_token_citizen_client')

    op.drop_table('oidc_token')
    with op.batch_alter_table('oidc_grant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_grant_client_id'))
        batch_op.drop_index(batch_op.f('ix_oidc_grant_citizen_id'))

    op.drop_table('oidc_grant')
    with op.batch_alter_table('consent_record', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_record_citizen_client')

    op.drop_table('consent_record')
    with op.batch_alter_table('claim_release', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_claim_release_citizen_id'))

    op.drop_table('claim_release')
    with op.batch_alter_table('oidc_signing_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_signing_key_state'))

    op.drop_table('oidc_signing_key')
    with op.batch_alter_table('oidc_logout_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_logout_delivery_status'))
        batch_op.drop_index(batch_op.f('ix_oidc_logout_delivery_client_id'))

    op.drop_table('oidc_logout_delivery')
    op.drop_table('oidc_client')
