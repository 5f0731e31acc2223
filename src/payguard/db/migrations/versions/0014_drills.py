"""drills

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 06:00:00

Drill plans, runs, steps, schedules (drills/).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payguard.db.base

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drill_plans",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("scenario", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("schedule", sa.String(length=120), nullable=True),
        sa.Column("environment", sa.String(length=300), nullable=False),
        sa.Column("method", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_plans")),
    )
    op.create_table(
        "drill_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=True),
        sa.Column("scenario", sa.String(length=64), nullable=False),
        sa.Column("started_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", payguard.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("record_dir", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_runs")),
    )
    op.create_index("ix_drill_runs_scenario", "drill_runs", ["scenario", "started_at"])
    op.create_table(
        "drill_schedules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("scenario", sa.String(length=64), nullable=False),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("next_run_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_run_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_schedules")),
    )
    op.create_index("ix_drill_schedules_due", "drill_schedules", ["enabled", "next_run_at"])


def downgrade() -> None:
    op.drop_index("ix_drill_schedules_due", table_name="drill_schedules")
    op.drop_table("drill_schedules")
    op.drop_index("ix_drill_runs_scenario", table_name="drill_runs")
    op.drop_table("drill_runs")
    op.drop_table("drill_plans")
