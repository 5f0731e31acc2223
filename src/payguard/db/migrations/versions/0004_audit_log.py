"""audit log: append-only records sealed into a Merkle tree, signed tree heads

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "audit_records",
        sa.Column("seq", big, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=96), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=True),
        sa.Column("leaf_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
    )
    op.create_index("ix_audit_records_leaf_index", "audit_records", ["leaf_index"], unique=True)
    op.create_index("ix_audit_records_unsealed", "audit_records", ["leaf_index", "seq"])
    op.create_table(
        "audit_tree_heads",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suite", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_tree_heads")),
    )
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("audit_tree_heads")
    op.drop_index("ix_audit_records_unsealed", table_name="audit_records")
    op.drop_index("ix_audit_records_leaf_index", table_name="audit_records")
    op.drop_table("audit_records")


# Records are never deleted, and a sealed record never changes: only the sealer's first
# write of leaf_index and leaf_hash passes. Tree heads are never changed or deleted.
def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_records_sealed BEFORE UPDATE ON audit_records "
            "WHEN OLD.leaf_index IS NOT NULL "
            "BEGIN SELECT RAISE(ABORT, 'a sealed audit record cannot change'); END"
        )
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_tree_heads_no_{action.lower()} BEFORE {action} "
                "ON audit_tree_heads BEGIN "
                "SELECT RAISE(ABORT, 'signed tree heads cannot change'); END"
            )
        return
    op.execute(
        """
        CREATE FUNCTION payguard_audit_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.leaf_index IS NOT NULL THEN
                RAISE EXCEPTION 'a sealed audit record cannot change'
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_records_sealed BEFORE UPDATE ON audit_records "
        "FOR EACH ROW EXECUTE FUNCTION payguard_audit_sealed()"
    )
    for table in ("audit_records", "audit_tree_heads"):
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION payguard_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION payguard_refuse_change()"
        )
    op.execute(
        "CREATE TRIGGER audit_tree_heads_no_update BEFORE UPDATE ON audit_tree_heads "
        "FOR EACH ROW EXECUTE FUNCTION payguard_refuse_change()"
    )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in (
            "audit_records_no_delete",
            "audit_records_sealed",
            "audit_tree_heads_no_update",
            "audit_tree_heads_no_delete",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    for name, table in (
        ("audit_records_sealed", "audit_records"),
        ("audit_records_no_delete", "audit_records"),
        ("audit_records_no_truncate", "audit_records"),
        ("audit_tree_heads_no_delete", "audit_tree_heads"),
        ("audit_tree_heads_no_truncate", "audit_tree_heads"),
        ("audit_tree_heads_no_update", "audit_tree_heads"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS payguard_audit_sealed()")
