"""session end reasons; limit overrides granted by four-eyes approval

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_reason", sa.String(length=24), nullable=True))
    op.create_table(
        "payment_limit_overrides",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("per_payment_max", sa.BigInteger(), nullable=False),
        sa.Column("daily_amount_max", sa.BigInteger(), nullable=False),
        sa.Column("daily_count_max", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approval_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_payment_limit_overrides")),
    )


def downgrade() -> None:
    op.drop_table("payment_limit_overrides")
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_column("end_reason")
