"""Drill fixtures: the drill history lives in a SQLite database of the test's own; each
drill attacks a sandbox platform of its own (a fresh SQLite database and server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from payguard.settings import Settings
from tests.conftest import make_settings


@pytest.fixture
def home_settings(sqlite_template: Path, tmp_path: Path) -> Settings:
    target = tmp_path / "home.db"
    shutil.copyfile(sqlite_template, target)
    return make_settings(f"sqlite:///{target}", tmp_path)
