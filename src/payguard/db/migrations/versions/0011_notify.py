"""notify

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 06:00:00

Notification records and webhook deliveries (notify/).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payguard.db.base

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_notifications",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recipient_kind", sa.String(length=16), nullable=False),
        sa.Column("recipient_ref", sa.String(length=64), nullable=True),
        sa.Column("recipient_index", sa.String(length=64), nullable=True),
        sa.Column("recipient_masked", sa.String(length=254), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_notifications")),
    )
    with op.batch_alter_table("notify_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notify_notifications_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notify_notifications_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(
            "ix_notify_notifications_recipient", ["recipient_kind", "recipient_ref"], unique=False
        )

    op.create_table(
        "notify_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("notification_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notify_notifications.id"],
            name=op.f("fk_notify_attempts_notification_id_notify_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_attempts")),
    )
    with op.batch_alter_table("notify_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notify_attempts_notification", ["notification_id", "number"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notify_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_notify_attempts_notification")
    op.drop_table("notify_attempts")
    with op.batch_alter_table("notify_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notify_notifications_recipient")
        batch_op.drop_index(batch_op.f("ix_notify_notifications_incident_id"))
        batch_op.drop_index("ix_notify_notifications_due")
    op.drop_table("notify_notifications")
