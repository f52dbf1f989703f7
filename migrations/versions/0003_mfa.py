"""Second factors: TOTP, passkeys, recovery codes

Revision ID: 0003_mfa
Revises: 0002_oidc
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import idp.models.base  # noqa: F401

revision: str = "0003_mfa"
down_revision: str | None = "0002_oidc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
