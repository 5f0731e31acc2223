"""cipher suites: the suite of each data key (standard or gm)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("suite", sa.String(length=16), nullable=False, server_default="standard")
        )


def downgrade() -> None:
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_column("suite")
