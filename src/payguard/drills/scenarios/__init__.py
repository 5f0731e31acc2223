"""The shipped drill scenarios: every module here with a ``SCENARIO`` is one.

``registry()`` finds them by importing each module of this package; a new scenario is a
new file, nothing to register (see README.md in this folder).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from payguard.drills.scenario import Scenario
from payguard.errors import NotFound


@lru_cache(maxsize=1)
def registry() -> dict[str, Scenario]:
    found: dict[str, Scenario] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda item: item.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if isinstance(scenario, Scenario):
            if scenario.name in found:
                raise ValueError(f"two scenarios are named '{scenario.name}'")
            found[scenario.name] = scenario
    return found


def get(name: str) -> Scenario:
    scenarios = registry()
    if name not in scenarios:
        raise NotFound(f"no drill scenario '{name}'; one of: {', '.join(sorted(scenarios))}")
    return scenarios[name]
