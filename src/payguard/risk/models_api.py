"""Trained risk models and analysts' labels over HTTP.

Models are read here; training is a command (``payguard risk train``) and activation,
rollback and deactivation are four-eyes requests through ``POST /v1/approvals`` with the
action ``risk.model_activate`` (target: a version, or ``none`` for rules alone)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from payguard.identity.permissions import Permission
from payguard.risk import learning
from payguard.risk.models import RiskLabel, RiskModel
from payguard.web import PrincipalDep, ServicesDep, access

router = APIRouter(tags=["risk"])
models_router = APIRouter(prefix="/v1/risk/models", tags=["risk"])


class ModelOut(BaseModel):
    version: str
    status: str = Field(description="trained | active | retired")
    algorithm: str
    data_source: str
    trained_by: str
    trained_at: datetime
    activated_at: datetime | None
    test_auprc: float | None = Field(description="average precision on the test part")
    test_recall_at_1pct_fpr: float | None

    @classmethod
    def of(cls, model: RiskModel) -> ModelOut:
        test = (model.metrics or {}).get("test", {})
        return cls(
            version=model.version,
            status=model.status,
            algorithm=model.algorithm,
            data_source=model.data_source,
            trained_by=model.trained_by,
            trained_at=model.trained_at,
            activated_at=model.activated_at,
            test_auprc=test.get("auprc"),
            test_recall_at_1pct_fpr=test.get("recall_at_1pct_fpr"),
        )


class ModelDetail(ModelOut):
    feature_names: list[str]
    metrics: dict[str, Any] = Field(
        description="split, train/test counts, test metrics (model, rules, both), importance"
    )

    @classmethod
    def of(cls, model: RiskModel) -> ModelDetail:
        return cls(
            **ModelOut.of(model).model_dump(),
            feature_names=list(model.feature_names),
            metrics=dict(model.metrics or {}),
        )


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: str = Field(min_length=1, max_length=40, description="or a decision id")
    label: Literal["fraud", "legitimate"]
    reason: str = Field(default="labelled in review", min_length=1, max_length=500)


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    payment_id: str
    label: str
    source: str
    by: str
    at: datetime

    @classmethod
    def of(cls, stored: RiskLabel) -> LabelOut:
        return cls.model_validate(stored)


@models_router.get("", summary="Trained models, newest first", **access(Permission.RISK_READ))
def list_models(svc: ServicesDep) -> list[ModelOut]:
    with svc.db.read() as session:
        return [ModelOut.of(model) for model in learning.list_models(session)]


@models_router.get(
    "/{version}",
    summary="One model: its data, time-ordered split, test metrics and features",
    **access(Permission.RISK_READ),
)
def get_model(version: str, svc: ServicesDep) -> ModelDetail:
    with svc.db.read() as session:
        return ModelDetail.of(learning.get_model(session, version))


@router.post(
    "/v1/risk/labels",
    summary="Label an assessed payment fraud or legitimate (training data)",
    **access(Permission.RISK_REVIEW),
)
def set_label(body: LabelIn, principal: PrincipalDep, svc: ServicesDep) -> LabelOut:
    return svc.db.transact(
        lambda session: LabelOut.of(
            learning.label_payment(
                session,
                body.payment_id,
                body.label,
                by_staff_id=principal.subject_id,
                reason=body.reason,
            )
        )
    )


router.include_router(models_router)
