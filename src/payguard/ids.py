"""Time-ordered identifiers (UUIDv7), prefixed by type: ``acc_…``, ``pay_…``."""

from __future__ import annotations

import uuid_utils

PREFIXES = {
    "account": "acc",
    "transfer": "trf",
    "hold": "hld",
    "payment": "pay",
    "customer": "cus",
    "staff": "stf",
    "session": "ses",
    "event": "evt",
    "merchant": "mer",
    "rail_operation": "rop",
    "device": "dev",
    "challenge": "chl",
    "approval": "apr",
    "data_key": "dek",
    "bank_instrument": "bnk",
    "totp": "tot",
    "recovery_code": "rcv",
    "one_time_code": "otc",
    "passkey": "pky",
    "message": "msg",
    "login_attempt": "lat",
    "list_entry": "lst",
    "decision": "dec",
    "alert": "alr",
    "incident": "inc",
    "incident_task": "itk",
    "playbook_run": "pbr",
    "playbook_step": "pbs",
    "notification": "ntf",
    "channel_suspension": "sus",
    "stepup_segment": "seg",
    "drill_plan": "dpl",
    "drill_run": "drl",
    "drill_schedule": "dsc",
    "evaluation": "evl",
}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{uuid_utils.uuid7().hex}"


def has_prefix(value: str, kind: str) -> bool:
    return value.startswith(PREFIXES[kind] + "_")
