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
    pass


def downgrade() -> None:
    pass
