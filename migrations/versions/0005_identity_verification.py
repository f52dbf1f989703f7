"""Identity verifications: the registry match at registration, later in-person checks

Revision ID: 0005_identity_verification
Revises: 0004_token_scope_keys
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from idp.models.base import UTCDateTime

revision: str = "0005_identity_verification"
down_revision: str | None = "0004_token_scope_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What registration has always checked: the citizen's NIK, name and birth date against the
#: population registry. Every existing account was made that way, at its creation.
REGISTRY_EVIDENCE = ('{"type": "electronic_record", "check_details": [{"check_method": "data", '
                     '"organization": "Dukcapil"}], "record": {"type": "population_register", '
                     '"source": {"name": "Direktorat Jenderal Kependudukan dan Pencatatan Sipil", '
                     '"country_code": "IDN"}}}')


def upgrade() -> None:
    op.create_table(
        "identity_verification",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("citizen_id", sa.Uuid(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("trust_framework", sa.String(length=64), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["citizen_id"], ["citizen.id"],
                                name="fk_identity_verification_citizen_id_citizen", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_identity_verification"),
    )
    op.create_index("ix_identity_verification_citizen_id", "identity_verification", ["citizen_id"])
    evidence = "CAST(:evidence AS JSON)" if op.get_bind().dialect.name == "postgresql" else ":evidence"
    op.execute(sa.text(
        "INSERT INTO identity_verification (citizen_id, method, trust_framework, verified_at, evidence) "
        f"SELECT id, 'registry_record', 'id_dukcapil', created_at, {evidence} FROM citizen"
    ).bindparams(sa.bindparam("evidence", REGISTRY_EVIDENCE, type_=sa.Text)))


def downgrade() -> None:
    op.drop_index("ix_identity_verification_citizen_id", table_name="identity_verification")
    op.drop_table("identity_verification")
