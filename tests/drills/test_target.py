"""``--target``: a drill against a running instance creates and uses drill actors only."""

from __future__ import annotations

import httpx
import pytest

from payguard.db.engine import Database
from payguard.drills import runner
from payguard.drills import service as drills
from payguard.errors import ValidationProblem
from payguard.settings import Settings
from tests.factories import Outbox, balance, register, top_up


def test_a_drill_against_a_running_instance_leaves_real_customers_alone(
    live_server: str, settings: Settings, db: Database
) -> None:
    with httpx.Client(base_url=live_server) as http:
        outbox = Outbox(db, settings)
        real = register(http, "alice", db=outbox)
        top_up(http, real, 50_000, db=outbox)

        result = runner.run(
            "instruction_tampering", settings, runner.RunOptions(target=live_server)
        )

        assert result["passed"], result["failures"]
        assert result["target"] == live_server.rstrip("/")
        assert result["actors"] and all(name.startswith("drill_") for name in result["actors"])
        assert balance(http, real) == 50_000
        mine = http.get("/v1/payments", headers=real.auth).json()["items"]
        assert [item["kind"] for item in mine] == ["top_up"]
    with db.read() as session:
        [stored] = drills.list_runs(session)
    assert stored.target == live_server.rstrip("/") and stored.passed

    with pytest.raises(ValidationProblem):
        runner.run(
            "instruction_tampering",
            settings,
            runner.RunOptions(target=live_server, disabled=("signed_instructions",)),
        )
