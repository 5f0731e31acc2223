"""personal data sealed with per-owner keys: data_keys, blind index of phones

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:30:00

Existing clear values (phone, e-mail, legal name, TOTP secrets) are sealed here with the
keyring of the current settings (``PAYGUARD_VAR_DIR``), which is created if missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
    )
    op.create_index("ix_data_keys_owner", "data_keys", ["owner", "version"])
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.alter_column("legal_name", type_=sa.Text(), existing_type=sa.String(120))
        batch_op.alter_column("phone", type_=sa.Text(), existing_type=sa.String(20))
        batch_op.alter_column("email", type_=sa.Text(), existing_type=sa.String(254))
        batch_op.add_column(sa.Column("phone_index", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_customers_phone_index"), ["phone_index"])
    with op.batch_alter_table("totp_credentials", schema=None) as batch_op:
        batch_op.alter_column("secret", type_=sa.Text(), existing_type=sa.String(64))
    _seal_existing()


def _seal_existing() -> None:
    bind = op.get_bind()
    customers = bind.execute(
        sa.text(
            "SELECT id, legal_name, phone, email FROM customers "
            "WHERE legal_name IS NOT NULL OR phone IS NOT NULL OR email IS NOT NULL"
        )
    ).all()
    secrets = bind.execute(
        sa.text("SELECT id, subject_kind, subject_id, secret FROM totp_credentials")
    ).all()
    if not customers and not secrets:
        return
    from payguard.crypto.envelope import envelope_for, is_sealed
    from payguard.settings import get_settings

    envelope = envelope_for(get_settings())
    session = Session(bind=bind)
    for row in customers:
        values: dict[str, str | None] = {"id": row.id, "phone_index": None}
        for column in ("legal_name", "phone", "email"):
            value = getattr(row, column)
            values[column] = (
                envelope.seal(session, row.id, f"customers.{column}.{row.id}", value)
                if value and not is_sealed(value)
                else value
            )
        if row.phone and not is_sealed(row.phone):
            values["phone_index"] = envelope.blind_index("phone", row.phone)
        session.execute(
            sa.text(
                "UPDATE customers SET legal_name = :legal_name, phone = :phone, "
                "email = :email, phone_index = :phone_index WHERE id = :id"
            ),
            values,
        )
    for row in secrets:
        if is_sealed(row.secret):
            continue
        owner = row.subject_id if row.subject_kind == "customer" else f"staff:{row.subject_id}"
        sealed = envelope.seal(session, owner, f"totp_credentials.secret.{row.id}", row.secret)
        session.execute(
            sa.text("UPDATE totp_credentials SET secret = :secret WHERE id = :id"),
            {"secret": sealed, "id": row.id},
        )
    session.flush()


def downgrade() -> None:
    # Sealed values stay sealed (and the columns wide enough for them): going back would
    # need the keys to open them.
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_phone_index"))
        batch_op.drop_column("phone_index")
    op.drop_index("ix_data_keys_owner", table_name="data_keys")
    op.drop_table("data_keys")
