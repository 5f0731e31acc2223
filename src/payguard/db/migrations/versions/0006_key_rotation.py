"""key rotation: which KEK wraps each data key

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kek_id", sa.String(length=32), nullable=False, server_default="kek-1")
        )


def downgrade() -> None:
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_column("kek_id")
