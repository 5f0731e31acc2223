"""bank instruments: bank card and account numbers as tokens (sealed, blind index, mask)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_instruments",
        sa.Column("token", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("number_index", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("masked", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_bank_instruments")),
    )
    op.create_index("ix_bank_instruments_number_index", "bank_instruments", ["number_index"])
    op.create_index(op.f("ix_bank_instruments_customer_id"), "bank_instruments", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bank_instruments_customer_id"), table_name="bank_instruments")
    op.drop_index("ix_bank_instruments_number_index", table_name="bank_instruments")
    op.drop_table("bank_instruments")
