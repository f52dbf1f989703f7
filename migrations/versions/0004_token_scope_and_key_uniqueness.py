"""Refresh tokens keep their own scope; one live key per algorithm and state

Revision ID: 0004_token_scope_keys
Revises: 0003_mfa
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from idp.models.base import UTCDateTime

revision: str = "0004_token_scope_keys"
down_revision: str | None = "0003_mfa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("state IN ('current', 'next')")


def upgrade() -> None:
    with op.batch_alter_table("oidc_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_scope", sa.Text(), nullable=True))
    # Two workers racing on an empty database could leave two live keys of one algorithm and state:
    # keep one of each, retire the others (still published, so their tokens keep validating).
    keys = sa.table("oidc_signing_key", sa.column("kid", sa.String), sa.column("alg", sa.String),
                    sa.column("state", sa.String), sa.column("retired_at", UTCDateTime()))
    keep = sa.select(sa.func.max(keys.c.kid)).where(keys.c.state.in_(("current", "next"))) \
        .group_by(keys.c.alg, keys.c.state)
    op.execute(keys.update().where(keys.c.state.in_(("current", "next")), keys.c.kid.not_in(keep))
               .values(state="retired", retired_at=dt.datetime.now(dt.UTC)))
    op.create_index("uq_oidc_signing_key_alg_live", "oidc_signing_key", ["alg", "state"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.drop_index("uq_oidc_signing_key_alg_live", table_name="oidc_signing_key")
    with op.batch_alter_table("oidc_token", schema=None) as batch_op:
        batch_op.drop_column("refresh_scope")
