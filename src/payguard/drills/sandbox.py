"""Where a drill runs: its own sandbox platform, or a running instance (``--target``).

The sandbox is a fresh temporary SQLite database migrated to head (a copy of a
template migrated once per version of the migrations), a fresh var dir (so
a fresh keyring), and a real server process (``uvicorn``) on a free local port, with the
platform's settings passed as ``PAYGUARD_*`` environment, exactly as an operator starts
it. Controls switched off for the drill go into that environment (or into the fresh
database before the server starts). ``PAYGUARD_INCIDENT_DRILL_RUN_ID`` tags every
incident the sandbox opens with the drill run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from payguard.db.engine import Database
from payguard.db.migrate import MIGRATIONS, upgrade
from payguard.drills.controls import Control
from payguard.settings import Settings

# Cheap password hashing keeps a drill's sandbox fast (every actor registers and logs in);
# the drill is about the platform's controls, not about Argon2's cost.
SANDBOX_ENV = {
    "PAYGUARD_ENV": "development",
    "PAYGUARD_ACCESS_LOG": "false",
    "PAYGUARD_LOG_LEVEL": "WARNING",
    "PAYGUARD_ARGON2_TIME_COST": "1",
    "PAYGUARD_ARGON2_MEMORY_KIB": "64",
    "PAYGUARD_ARGON2_PARALLELISM": "1",
    "PAYGUARD_OTP_SENDS_PER_HOUR": "1000",
    "PAYGUARD_DATABASE_POOL_SIZE": "12",
    "PAYGUARD_IDEMPOTENCY_WAIT_SECONDS": "10",
    # A loaded machine must not turn a drill's payments into the fallback challenge.
    "PAYGUARD_RISK_TIME_BUDGET_MS": "2000",
    "PAYGUARD_RISK_RELOAD_SECONDS": "0.5",
}


START_TIMEOUT_SECONDS = 120.0


@dataclass
class Platform:
    """The platform under drill: its URL, and its settings and database (the records
    the drill reads detections and money checks from)."""

    base_url: str
    settings: Settings
    db: Database
    target: str  # "sandbox" or the URL


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _template() -> Path:
    """A database migrated to head, made once per version of the migrations and copied
    for each sandbox (migrating takes seconds; copying a file does not)."""
    digest = hashlib.sha256()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    template = Path(tempfile.gettempdir()) / f"payguard-drill-template-{digest.hexdigest()[:16]}.db"
    if not template.exists():
        scratch = template.with_suffix(f".{os.getpid()}.tmp")
        scratch.unlink(missing_ok=True)
        upgrade(f"sqlite:///{scratch}")
        os.replace(scratch, template)  # atomic: a concurrent sandbox sees all or nothing
    return template


class _SandboxSettings(Settings):
    """The sandbox server's settings as the runner reads them: from the sandbox's own
    environment only, never from the operator's PAYGUARD_* variables or .env file (the
    server does not get those either: no Redis, no passphrase of the real platform)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _settings_from_env(env: dict[str, str]) -> Settings:
    values: dict[str, Any] = {
        key.removeprefix("PAYGUARD_").lower(): value
        for key, value in env.items()
        if key.startswith("PAYGUARD_")
    }
    return _SandboxSettings(**values)


class Sandbox:
    """``with Sandbox(run_id, disabled) as platform:`` a fresh platform for one drill."""

    def __init__(
        self,
        run_id: str,
        disabled: list[Control] | None = None,
        *,
        keep: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.disabled = disabled or []
        self.keep = keep
        self.extra_env = extra_env or {}
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.platform: Platform | None = None
        self._log: BinaryIO | None = None

    def environment(self, root: Path, port: int) -> dict[str, str]:
        env = {
            **SANDBOX_ENV,
            "PAYGUARD_DATABASE_URL": f"sqlite:///{root / 'payguard.db'}",
            "PAYGUARD_VAR_DIR": str(root / "var"),
            "PAYGUARD_PORT": str(port),
            "PAYGUARD_INCIDENT_DRILL_RUN_ID": self.run_id,
        }
        for control in self.disabled:
            env.update(control.env)
        env.update(self.extra_env)
        return env

    def __enter__(self) -> Platform:
        self.root = Path(tempfile.mkdtemp(prefix=f"payguard-drill-{self.run_id[-8:]}-"))
        port = _free_port()
        env = self.environment(self.root, port)
        settings = _settings_from_env(env)
        shutil.copyfile(_template(), self.root / "payguard.db")
        db = Database(settings.database_url)
        for control in self.disabled:
            if control.prepare is not None:
                db.transact(control.prepare)
        inherited = {
            key: value for key, value in os.environ.items() if not key.startswith("PAYGUARD_")
        }
        self._log = (self.root / "server.log").open("wb")
        # The command line is fixed: this interpreter running uvicorn on the app factory.
        self.process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "uvicorn",
                "payguard.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env={**inherited, **env},
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        base = f"http://127.0.0.1:{port}"
        # Generous: a loaded machine (a CI runner, a test suite on two cores) can take
        # a while to import the app; a server that died is noticed at once.
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                db.dispose()
                log = (self.root / "server.log").read_text("utf-8", errors="replace")[-2000:]
                if not self.keep:
                    shutil.rmtree(self.root, ignore_errors=True)
                raise RuntimeError(f"the drill sandbox server did not start: {log.strip()}")
            time.sleep(0.1)
        self.platform = Platform(base, settings, db, "sandbox")
        return self.platform

    def _stop(self) -> None:
        if self._log is not None:
            self._log.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _trace: TracebackType | None,
    ) -> None:
        self._stop()
        if self.platform is not None:
            self.platform.db.dispose()
        if self.root is not None and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


class Target:
    """A running instance: attacked at ``url``, observed through ``settings`` (its own
    database and keyring, as every ``payguard`` command uses them)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self.db: Database | None = None

    def __enter__(self) -> Platform:
        try:
            ready = httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            ready = False
        if not ready:
            raise RuntimeError(f"the target {self.url} is not ready (GET /readyz)")
        self.db = Database(self.settings.database_url)
        return Platform(self.url, self.settings, self.db, self.url)

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _trace: TracebackType | None,
    ) -> None:
        if self.db is not None:
            self.db.dispose()
