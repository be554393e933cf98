"""Which import paths a recipe may name: a callable defined in the user's own module, never the standard
library or a builtin (`os:system`, `subprocess:run`, `builtins:eval` would run whatever their kwargs say).

The name is checked before anything is imported, and the resolved callable once more (a user module that
re-exports `os.system` is still refused). Only a recipe names factories; a file edgekd wrote (a model sidecar,
a manifest) never does. This is a guard against mistakes and against data naming code, not a sandbox: a recipe
with a factory runs that factory's code, as SECURITY.md says.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from edgekd.errors import RecipeError

# stdlib and builtins: none of them builds a model, several run commands
_REFUSED_TOP_LEVEL = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names) | {"builtins"}


def _top(module_name: str) -> str:
    return module_name.split(".", 1)[0]


def check_import_path(spec: str, key: str) -> tuple[str, str]:
    """(module, attribute) of `package.module:function`, refusing malformed and standard-library paths
    without importing anything."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".")) \
            or not all(p.isidentifier() for p in attr.split(".")):  # fmt: skip
        raise RecipeError(f"recipe key '{key}': '{spec}' must look like package.module:function")
    if _top(module_name) in _REFUSED_TOP_LEVEL:
        raise RecipeError(f"recipe key '{key}': '{spec}' names the Python standard library, which does not build "
                          "models and may run commands; name a function in your own module "
                          "(package.module:function)")  # fmt: skip
    return module_name, attr


def check_resolved(target: Any, spec: str, key: str) -> None:
    """Refuse a resolved callable that is a builtin or lives in the standard library."""
    owner = getattr(target, "__module__", None) or ""
    if inspect.isbuiltin(target) or _top(owner) in _REFUSED_TOP_LEVEL:
        raise RecipeError(f"recipe key '{key}': '{spec}' resolves to {owner or 'a builtin'}."
                          f"{getattr(target, '__qualname__', '?')}, a standard-library or builtin callable; name a "
                          "function or class defined in your own module")  # fmt: skip
    if not callable(target):
        raise RecipeError(f"recipe key '{key}': '{spec}' is not callable")
