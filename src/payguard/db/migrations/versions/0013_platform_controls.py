"""platform controls

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 06:00:00

Payment channel suspensions, step-up segments, forced password resets (payments/, identity/).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payguard.db.base

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_channel_suspensions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.Column("suspended_by", sa.String(length=64), nullable=False),
        sa.Column("suspended_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.Column("lift_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_channel_suspensions")),
    )
    with op.batch_alter_table("payment_channel_suspensions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_channel_suspensions_active", ["lifted_at", "scope"], unique=False
        )
        batch_op.create_index(
            "ix_payment_channel_suspensions_account", ["account_id"], unique=False
        )

    op.create_table(
        "stepup_segments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("segment", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stepup_segments")),
    )
    with op.batch_alter_table("stepup_segments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_stepup_segments_active", ["lifted_at", "expires_at"], unique=False
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "password_reset_required_at",
                payguard.db.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "password_reset_required_at",
                payguard.db.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("password_reset_required_at")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("password_reset_required_at")
    with op.batch_alter_table("stepup_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_stepup_segments_active")
    op.drop_table("stepup_segments")
    with op.batch_alter_table("payment_channel_suspensions", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_channel_suspensions_account")
        batch_op.drop_index("ix_payment_channel_suspensions_active")
    op.drop_table("payment_channel_suspensions")
