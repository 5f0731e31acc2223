"""Real-name (KYC) data: identity documents, their checks, masking and keyed digests.

Tiers (limits per tier are ``Settings.tier_limits``):

- 0: phone only, no real name;
- 1: real name and a well-formed identity document (GB 11643 check digit and birth date
  for mainland resident IDs), self-declared at registration;
- 2: identity verified remotely by staff (document checked against the issuing authority,
  face match);
- 3: verified in person, or a bank card in the customer's own name bound.

Only tier 0 → 1 happens by itself (at registration with real-name data); every other
change is a staff action through four-eyes approval. The full ID number is never kept:
only a masked form for display and an HMAC-SHA256 digest under ``id_digest_key`` that
lets one person hold one account without storing the number.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

from payguard import clock
from payguard.errors import ValidationProblem
from payguard.settings import Settings

MAINLAND_ID = "cn_resident_id"
DOCUMENT_TYPES = (
    MAINLAND_ID,
    "passport",
    "hk_macau_permit",  # 港澳居民来往内地通行证
    "taiwan_permit",  # 台湾居民来往大陆通行证
    "foreign_permanent_residence",  # 外国人永久居留身份证
)
TIER_MEANINGS = {
    0: "phone only",
    1: "real name and identity document declared (format checked)",
    2: "identity verified remotely (document and face)",
    3: "verified in person or own-name bank card bound",
}
# GB 11643-1999: weights of the first 17 digits, and the check character by sum mod 11.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
_OTHER_DOCUMENT = re.compile(r"^[A-Z0-9]{5,20}$")


def mainland_check_character(first_17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first_17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def normalise_document(document_type: str, number: str) -> str:
    """The canonical form of an ID number, or a ValidationProblem naming what is wrong
    (never echoing the number, which is personal data)."""
    if document_type not in DOCUMENT_TYPES:
        raise ValidationProblem(f"id_document_type: one of {', '.join(DOCUMENT_TYPES)}")
    cleaned = number.replace(" ", "").replace("-", "").upper()
    if document_type != MAINLAND_ID:
        if not _OTHER_DOCUMENT.match(cleaned):
            raise ValidationProblem("id_number: 5 to 20 letters and digits")
        return cleaned
    if not re.fullmatch(r"\d{17}[\dX]", cleaned):
        raise ValidationProblem("id_number: a mainland resident ID has 17 digits and a check digit")
    if int(cleaned[:2]) not in _PROVINCES:
        raise ValidationProblem("id_number: the region code is not a valid province")
    try:
        born = date(int(cleaned[6:10]), int(cleaned[10:12]), int(cleaned[12:14]))
    except ValueError as error:
        raise ValidationProblem("id_number: the birth date in the number is not a date") from error
    if not date(1900, 1, 1) <= born <= clock.now().date():
        raise ValidationProblem("id_number: the birth date in the number is out of range")
    if mainland_check_character(cleaned[:17]) != cleaned[17]:
        raise ValidationProblem("id_number: the check digit does not match (GB 11643)")
    return cleaned


def mask(number: str) -> str:
    """What staff screens and API replies show: the first 3 and last 4 characters."""
    return number[:3] + "*" * max(0, len(number) - 7) + number[-4:]


def digest(settings: Settings, document_type: str, number: str) -> str:
    key = settings.id_digest_key.get_secret_value().encode()
    return hmac.new(key, f"{document_type}:{number}".encode(), hashlib.sha256).hexdigest()
