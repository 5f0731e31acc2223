"""The audit log over HTTP: the public key, signed tree heads, records and proofs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from payguard.audit import service
from payguard.audit.models import AuditRecord
from payguard.audit.schemas import AuditRecordOut, ProofOut, PublicKeyOut, TreeHeadOut
from payguard.errors import NotFound
from payguard.identity.permissions import Permission
from payguard.web import PUBLIC, ServicesDep, access

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "/public-key",
    summary="The key that signs tree heads: all an outside auditor needs",
    **access(audience=PUBLIC),
)
def public_key(svc: ServicesDep) -> PublicKeyOut:
    signer = svc.signer
    return PublicKeyOut(suite=signer.suite, key_id=signer.key_id, public_key_pem=signer.public_pem)


@router.get("/heads", summary="Signed tree heads, oldest first", **access(Permission.AUDIT_READ))
def list_heads(svc: ServicesDep) -> list[TreeHeadOut]:
    with svc.db.read() as session:
        return [TreeHeadOut(**head.as_dict()) for head in service.heads(session)]


@router.get("/heads/latest", summary="The newest signed tree head", **access(Permission.AUDIT_READ))
def latest(svc: ServicesDep) -> TreeHeadOut:
    with svc.db.read() as session:
        head = service.latest_head(session)
    if head is None:
        raise NotFound("no tree head yet; POST /v1/audit/heads makes one")
    return TreeHeadOut(**head.as_dict())


@router.post(
    "/heads",
    status_code=status.HTTP_201_CREATED,
    summary="Seal new records and sign a tree head now",
    **access(Permission.AUDIT_READ),
)
def make_head(svc: ServicesDep) -> TreeHeadOut:
    head = svc.db.transact(lambda session: service.make_tree_head(session, svc.signer))
    if head is None:
        with svc.db.read() as session:
            head = service.latest_head(session)
    if head is None:
        raise NotFound("the audit log is empty")
    return TreeHeadOut(**head.as_dict())


@router.get("/records", summary="Audit records in order", **access(Permission.AUDIT_READ))
def records(
    svc: ServicesDep,
    after: Annotated[int, Query(ge=0, description="seq to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuditRecordOut]:
    query = select(AuditRecord).where(AuditRecord.seq > after).order_by(AuditRecord.seq)
    if action:
        query = query.where(AuditRecord.action == action)
    with svc.db.read() as session:
        rows = session.scalars(query.limit(limit)).all()
        return [AuditRecordOut.model_validate(row, from_attributes=True) for row in rows]


@router.get(
    "/proofs/inclusion",
    summary="Proof that a record is in a signed tree (RFC 6962 audit path)",
    **access(Permission.AUDIT_READ),
)
def inclusion(
    svc: ServicesDep,
    seq: Annotated[int, Query(ge=1)],
    tree_size: Annotated[int, Query(ge=1)],
) -> ProofOut:
    with svc.db.read() as session:
        document: dict[str, Any] = service.inclusion(session, seq, tree_size)
    return ProofOut(**document)


@router.get(
    "/proofs/consistency",
    summary="Proof that an older signed tree is a prefix of a newer one",
    **access(Permission.AUDIT_READ),
)
def consistency(
    svc: ServicesDep,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
) -> ProofOut:
    with svc.db.read() as session:
        document: dict[str, Any] = service.consistency(session, first, second)
    return ProofOut(**document)
