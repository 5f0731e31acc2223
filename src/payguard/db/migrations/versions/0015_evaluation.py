"""evaluation

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 06:00:00

Evaluation runs and indicator values (evaluation/).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payguard.db.base

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("period_start", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("overall_score", sa.Float(), nullable=True),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.Column("pass_score", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(length=12), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("no_data", sa.Integer(), nullable=False),
        sa.Column("group_scores", sa.JSON(), nullable=False),
        sa.Column("previous_run_id", sa.String(length=40), nullable=True),
        sa.Column("config_sha", sa.String(length=64), nullable=False),
        sa.Column("config_source", sa.Text(), nullable=False),
        sa.Column("report_dir", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", payguard.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_runs")),
    )
    with op.batch_alter_table("evaluation_runs", schema=None) as batch_op:
        batch_op.create_index("ix_evaluation_runs_created", ["created_at"], unique=False)

    op.create_table(
        "evaluation_values",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("indicator", sa.String(length=48), nullable=False),
        sa.Column("group", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("numerator", sa.Float(), nullable=True),
        sa.Column("denominator", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("unit", sa.String(length=12), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evaluation_runs.id"],
            name=op.f("fk_evaluation_values_run_id_evaluation_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_values")),
    )
    with op.batch_alter_table("evaluation_values", schema=None) as batch_op:
        batch_op.create_index(
            "ix_evaluation_values_indicator", ["indicator", "run_id"], unique=False
        )
        batch_op.create_index("ix_evaluation_values_run", ["run_id", "position"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("evaluation_values", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_values_run")
        batch_op.drop_index("ix_evaluation_values_indicator")

    op.drop_table("evaluation_values")
    with op.batch_alter_table("evaluation_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_runs_created")

    op.drop_table("evaluation_runs")
