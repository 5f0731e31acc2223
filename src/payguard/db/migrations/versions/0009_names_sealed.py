"""display names and device names sealed like the rest of the personal data

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 13:10:00

Existing clear values are sealed with the keyring of the current settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.alter_column("display_name", type_=sa.Text(), existing_type=sa.String(120))
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("name", type_=sa.Text(), existing_type=sa.String(80))
    bind = op.get_bind()
    customers = bind.execute(sa.text("SELECT id, display_name FROM customers")).all()
    devices = bind.execute(sa.text("SELECT id, customer_id, name FROM devices")).all()
    if not customers and not devices:
        return
    from payguard.crypto.envelope import envelope_for, is_sealed
    from payguard.settings import get_settings

    envelope = envelope_for(get_settings())
    session = Session(bind=bind)
    for row in customers:
        if row.display_name and not is_sealed(row.display_name):
            session.execute(
                sa.text("UPDATE customers SET display_name = :value WHERE id = :id"),
                {
                    "value": envelope.seal(
                        session, row.id, f"customers.display_name.{row.id}", row.display_name
                    ),
                    "id": row.id,
                },
            )
    for row in devices:
        if row.name and not is_sealed(row.name):
            session.execute(
                sa.text("UPDATE devices SET name = :value WHERE id = :id"),
                {
                    "value": envelope.seal(
                        session, row.customer_id, f"devices.name.{row.id}", row.name
                    ),
                    "id": row.id,
                },
            )
    session.flush()


def downgrade() -> None:
    pass  # sealed names stay sealed; the columns stay wide enough for them
