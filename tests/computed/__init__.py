"""What providers compute, answered by the mocks. One module per provider package, found by name.

A provider module (for example `azure_native.py` for `azure-native:*` types) defines
`outputs(type_token, name, inputs) -> dict` and may define `invoke(token, args) -> dict`.
Without computed outputs such as `name` or `result`, dependent inputs would vanish under mocks.
"""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType
from typing import Any, Optional


def _module(token: str) -> Optional[ModuleType]:
    package = token.split(":")[0].replace("-", "_")
    try:
        return importlib.import_module(f"{__name__}.{package}")
    except ModuleNotFoundError:
        return None


def stable(name: str, length: int = 32) -> str:
    """A deterministic alphanumeric value, so two evaluations of one stack compare equal."""
    return hashlib.sha256(name.encode()).hexdigest()[:length]


def outputs(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    module = _module(type_token)
    return module.outputs(type_token, name, inputs) if module else {}


def invoke(token: str, args: dict[str, Any]) -> dict[str, Any]:
    module = _module(token)
    if module is None or not hasattr(module, "invoke"):
        raise NotImplementedError(f"no mock for invoke {token}; add one to tests/computed/")
    return module.invoke(token, args)
