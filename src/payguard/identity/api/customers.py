"""Registration, login and logout for customers and staff."""

from __future__ import annotations

from fastapi import APIRouter, status

from payguard.errors import Forbidden
from payguard.identity import service
from payguard.identity.schemas import (
    CustomerOut,
    CustomerRegistration,
    KycTierChange,
    LoginRequest,
    MeOut,
    SessionOut,
)
from payguard.web import PrincipalDep, ServicesDep, require_staff

router = APIRouter(prefix="/v1", tags=["identity"])


def _customer_out(svc: ServicesDep, customer_id: str) -> CustomerOut:
    with svc.db.read() as session:
        customer = service.get_customer(session, customer_id)
        return CustomerOut(
            id=customer.id,
            username=customer.username,
            display_name=customer.display_name,
            kyc_tier=customer.kyc_tier,
            status=customer.status,
            created_at=customer.created_at,
            wallet_account_ids=service.wallet_ids(session, customer.id),
        )


@router.post("/customers", status_code=status.HTTP_201_CREATED, summary="Register a customer")
def register(body: CustomerRegistration, svc: ServicesDep) -> CustomerOut:
    customer, _wallet = svc.db.transact(
        lambda session: service.register_customer(
            session,
            svc.settings,
            username=body.username,
            password=body.password,
            display_name=body.display_name,
            currency=body.currency,
        )
    )
    return _customer_out(svc, customer.id)


@router.post("/sessions", status_code=status.HTTP_201_CREATED, summary="Customer login")
def login(body: LoginRequest, svc: ServicesDep) -> SessionOut:
    issued = svc.db.transact(
        lambda session: service.login_customer(
            session, svc.settings, username=body.username, password=body.password
        )
    )
    return SessionOut(
        token=issued.token, session_id=issued.session_id, expires_in=issued.expires_in
    )


@router.post("/staff/sessions", status_code=status.HTTP_201_CREATED, summary="Staff login")
def staff_login(body: LoginRequest, svc: ServicesDep) -> SessionOut:
    issued = svc.db.transact(
        lambda session: service.login_staff(
            session, svc.settings, username=body.username, password=body.password
        )
    )
    return SessionOut(
        token=issued.token, session_id=issued.session_id, expires_in=issued.expires_in
    )


@router.delete("/sessions/current", status_code=status.HTTP_204_NO_CONTENT, summary="Log out")
def logout(principal: PrincipalDep, svc: ServicesDep) -> None:
    svc.db.transact(lambda session: service.revoke_session(session, principal.session_id))


@router.get("/me", summary="Who the session belongs to")
def me(principal: PrincipalDep, svc: ServicesDep) -> MeOut:
    return MeOut(
        kind=principal.kind,
        id=principal.subject_id,
        role=principal.role,
        session_id=principal.session_id,
    )


@router.get("/customers/me", summary="The calling customer's profile")
def my_profile(principal: PrincipalDep, svc: ServicesDep) -> CustomerOut:
    if principal.kind != "customer":
        raise Forbidden("this endpoint is for customers")
    return _customer_out(svc, principal.subject_id)


@router.get(
    "/customers/{customer_id}",
    summary="A customer's profile (staff)",
    dependencies=[require_staff("viewer", "operations", "risk_analyst", "compliance", "auditor")],
)
def customer_profile(customer_id: str, svc: ServicesDep) -> CustomerOut:
    return _customer_out(svc, customer_id)


@router.put(
    "/customers/{customer_id}/kyc-tier",
    summary="Change a customer's KYC tier (staff: operations)",
    dependencies=[require_staff("operations", "compliance")],
)
def change_tier(customer_id: str, body: KycTierChange, svc: ServicesDep) -> CustomerOut:
    svc.db.transact(lambda session: service.set_kyc_tier(session, customer_id, body.tier))
    return _customer_out(svc, customer_id)
