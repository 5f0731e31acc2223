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
    pass


def downgrade() -> None:
    pass
