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
    pass


def downgrade() -> None:
    pass
