"""Imports every domain's models so ``Base.metadata`` knows all tables."""

from payguard.audit import models as _audit  # noqa: F401
from payguard.crypto import models as _crypto  # noqa: F401
from payguard.db.base import Base
from payguard.drills import models as _drills  # noqa: F401
from payguard.evaluation import models as _evaluation  # noqa: F401
from payguard.events import models as _events  # noqa: F401
from payguard.identity import models as _identity  # noqa: F401
from payguard.incidents import models as _incidents  # noqa: F401
from payguard.ledger import models as _ledger  # noqa: F401
from payguard.notify import models as _notify  # noqa: F401
from payguard.payments import models as _payments  # noqa: F401
from payguard.risk import models as _risk  # noqa: F401

metadata = Base.metadata
