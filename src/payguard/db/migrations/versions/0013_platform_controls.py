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
    pass


def downgrade() -> None:
    pass
