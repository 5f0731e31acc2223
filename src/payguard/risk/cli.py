"""``payguard risk``: decisions, rules, lists, models, alerts and the review queue."""

from __future__ import annotations

import typer

risk_app = typer.Typer(help="The risk engine", no_args_is_help=True)
