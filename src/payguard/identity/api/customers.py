"""Registration, login and logout for customers and staff."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy.orm import Session

from payguard.approval_actions import KYC_TIER_CHANGE
from payguard.errors import Forbidden
from payguard.events import service as events
from payguard.identity import service, sessions, throttle
from payguard.identity.otp import mask_destination
from payguard.identity.permissions import Permission
from payguard.identity.schemas import (
    ActiveSessionOut,
    ApprovalOut,
    CustomerOut,
    CustomerRegistration,
    KycTierChange,
    LoginRequest,
    MeOut,
    PasswordChange,
    RefreshRequest,
    SessionOut,
    UnlockRequest,
)
from payguard.web import (
    CUSTOMERS,
    PUBLIC,
    SIGNED_IN,
    PrincipalDep,
    ServicesDep,
    access,
    request_approval,
)

router = APIRouter(prefix="/v1", tags=["identity"])


def _customer_out(svc: ServicesDep, customer_id: str) -> CustomerOut:
    with svc.db.read() as session:
        customer = service.get_customer(session, customer_id)
        contact = service.personal_data(session, svc.settings, customer)
        return CustomerOut(
            id=customer.id,
            username=customer.username,
            display_name=contact.display_name or "",
            kyc_tier=customer.kyc_tier,
            status=customer.status,
            created_at=customer.created_at,
            wallet_account_ids=service.wallet_ids(session, customer.id),
            legal_name=contact.legal_name,
            id_document_type=customer.id_document_type,
            id_number_masked=customer.id_number_masked,
            phone_masked=mask_destination(contact.phone) if contact.phone else None,
            email_masked=mask_destination(contact.email) if contact.email else None,
        )


@router.post(
    "/customers",
    status_code=status.HTTP_201_CREATED,
    summary="Register a customer",
    **access(audience=PUBLIC),
)
def register(body: CustomerRegistration, svc: ServicesDep) -> CustomerOut:
    customer, _wallet = svc.db.transact(
        lambda session: service.register_customer(
            session,
            svc.settings,
            username=body.username,
            password=body.password,
            display_name=body.display_name,
            currency=body.currency,
            phone=body.phone,
            email=body.email,
            legal_name=body.legal_name,
            id_document_type=body.id_document_type,
            id_number=body.id_number,
        )
    )
    return _customer_out(svc, customer.id)


def _login(request: Request, body: LoginRequest, svc: ServicesDep, kind: str) -> SessionOut:
    attempt = sessions.Attempt(
        subject_kind=kind,
        username=body.username,
        password=body.password,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        device_id=body.device_id,
        totp_code=body.otp,
    )
    return _session_out(
        svc.db.transact(lambda session: sessions.login(session, svc.settings, attempt))
    )


def _session_out(result: sessions.LoginResult) -> SessionOut:
    if result.refusal is not None:
        raise result.refusal  # after the commit: the failure and attempt are recorded
    issued = result.issued
    assert issued is not None
    return SessionOut(
        token=issued.token,
        session_id=issued.session_id,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )


@router.post(
    "/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Customer login",
    **access(audience=PUBLIC),
)
def login(request: Request, body: LoginRequest, svc: ServicesDep) -> SessionOut:
    return _login(request, body, svc, "customer")


@router.post(
    "/staff/sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Staff login (TOTP)",
    **access(audience=PUBLIC),
)
def staff_login(request: Request, body: LoginRequest, svc: ServicesDep) -> SessionOut:
    return _login(request, body, svc, "staff")


@router.post(
    "/sessions/refresh",
    status_code=status.HTTP_201_CREATED,
    summary="New access and refresh tokens for a refresh token (each usable once)",
    **access(audience=PUBLIC),
)
def refresh(body: RefreshRequest, svc: ServicesDep) -> SessionOut:
    return _session_out(
        svc.db.transact(lambda session: sessions.refresh(session, svc.settings, body.refresh_token))
    )


@router.get("/sessions", summary="Your active sessions", **access(audience=SIGNED_IN))
def list_sessions(principal: PrincipalDep, svc: ServicesDep) -> list[ActiveSessionOut]:
    with svc.db.read() as session:
        rows = sessions.list_active(session, principal.kind, principal.subject_id)
        return [
            ActiveSessionOut(
                id=row.id,
                created_at=row.created_at,
                expires_at=row.expires_at,
                last_used_at=row.last_used_at,
                device_id=row.device_id,
                auth_level=row.auth_level,
                source_ip=row.source_ip,
                user_agent=row.user_agent,
                current=row.id == principal.session_id,
            )
            for row in rows
        ]


@router.delete(
    "/sessions/current",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out",
    **access(audience=SIGNED_IN),
)
def logout(principal: PrincipalDep, svc: ServicesDep) -> None:
    svc.db.transact(lambda session: service.revoke_session(session, principal.session_id))


@router.delete(
    "/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out everywhere",
    **access(audience=SIGNED_IN),
)
def logout_everywhere(principal: PrincipalDep, svc: ServicesDep) -> None:
    svc.db.transact(
        lambda session: sessions.revoke_all(session, principal.kind, principal.subject_id)
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End one session",
    **access(audience=SIGNED_IN),
)
def end_session(session_id: str, principal: PrincipalDep, svc: ServicesDep) -> None:
    subject = (principal.kind, principal.subject_id)
    svc.db.transact(lambda session: sessions.revoke(session, session_id, subject=subject))


@router.post(
    "/staff/login-unlocks",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Lift a login lock before it times out (staff: operations)",
    **access(Permission.LOGINS_UNLOCK),
)
def unlock_login(body: UnlockRequest, principal: PrincipalDep, svc: ServicesDep) -> None:
    def work(session: Session) -> None:
        throttle.reset(session, throttle.account_key(body.subject_kind, body.username))
        events.emit(
            session,
            "identity.login_unlocked",
            {"subject_kind": body.subject_kind, "by_staff_id": principal.subject_id},
        )

    svc.db.transact(work)


@router.get("/me", summary="Who the session belongs to", **access(audience=SIGNED_IN))
def me(principal: PrincipalDep, svc: ServicesDep) -> MeOut:
    return MeOut(
        kind=principal.kind,
        id=principal.subject_id,
        role=principal.role,
        session_id=principal.session_id,
    )


@router.get("/customers/me", summary="The calling customer's profile", **access(audience=CUSTOMERS))
def my_profile(principal: PrincipalDep, svc: ServicesDep) -> CustomerOut:
    if principal.kind != "customer":
        raise Forbidden("this endpoint is for customers")
    return _customer_out(svc, principal.subject_id)


@router.post(
    "/customers/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change your password; your other sessions end",
    **access(audience=CUSTOMERS),
)
def change_password(body: PasswordChange, principal: PrincipalDep, svc: ServicesDep) -> None:
    if principal.kind != "customer":
        raise Forbidden("this endpoint is for customers")
    svc.db.transact(
        lambda session: service.change_password(
            session,
            svc.settings,
            principal.subject_id,
            session_id=principal.session_id,
            current_password=body.current_password,
            new_password=body.new_password,
        )
    )


@router.get(
    "/customers/{customer_id}",
    summary="A customer's profile (staff)",
    **access(Permission.CUSTOMERS_READ),
)
def customer_profile(customer_id: str, svc: ServicesDep) -> CustomerOut:
    return _customer_out(svc, customer_id)


@router.post(
    "/customers/{customer_id}/kyc-tier",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask to change a customer's KYC tier: another staff member must approve",
    **access(Permission.KYC_TIER_CHANGE),
)
def change_tier(
    customer_id: str, body: KycTierChange, principal: PrincipalDep, svc: ServicesDep
) -> ApprovalOut:
    return request_approval(
        svc,
        principal,
        action=KYC_TIER_CHANGE,
        target=customer_id,
        params={"tier": body.tier},
        reason=body.reason,
    )
