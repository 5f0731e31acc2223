"""incidents

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 06:00:00

Incidents, roles, tasks, links, timeline, playbook runs (incidents/).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import payguard.db.base

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
