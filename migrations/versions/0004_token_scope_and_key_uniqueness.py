"""Refresh tokens keep their own scope; one live key per algorithm and state

Revision ID: 0004_token_scope_keys
Revises: 0003_mfa
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_token_scope_keys"
down_revision: str | None = "0003_mfa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("state IN ('current', 'next')")


def upgrade() -> None:
    with op.batch_alter_table("oidc_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_scope", sa.Text(), nullable=True))
    op.create_index("uq_oidc_signing_key_alg_live", "oidc_signing_key", ["alg", "state"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.drop_index("uq_oidc_signing_key_alg_live", table_name="oidc_signing_key")
    with op.batch_alter_table("oidc_token", schema=None) as batch_op:
        batch_op.drop_column("refresh_scope")
