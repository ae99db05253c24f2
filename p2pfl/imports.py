"""Loading the user's own code by import path: ``"package.module:attribute"``.

A run can name its model factory (``train.model``) and data loader (``data.dataset``) as
import paths instead of built-in names, so that every process of the run, and every host
of a deployment, loads the same code from the same settings. Where a module is looked up:

1. the normal Python import system (``sys.path``: installed packages, ``PYTHONPATH``, the
   directory of the script being run);
2. if it is not found there, the current working directory (appended to ``sys.path``).

``p2pfl run --processes`` hands the directories its own process found the modules in to the
node processes it starts (``PYTHONPATH``, :func:`import_roots`). On other hosts the module
must be importable the same way: installed, on ``PYTHONPATH``, or in the directory
``p2pfl node`` is started from.

Python objects given to :class:`~p2pfl.Experiment` that cannot be imported back by name
(lambdas, closures, tensors, anything defined in ``__main__``) stay in the process that got
them; the settings then hold a placeholder (:func:`placeholder`) that no other process can
load.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*")
_PLACEHOLDER_RE = re.compile(r"<python: [^<>]{1,200}>")

#: What the messages say an import path looks like.
IMPORT_PATH_HELP = "an import path 'package.module:name'"


def is_import_path(value: Any) -> bool:
    """True for ``"package.module:name"`` (dotted module, a colon, a dotted attribute)."""
    return isinstance(value, str) and bool(_IMPORT_PATH_RE.fullmatch(value))


def placeholder(obj: Any) -> str:
    """The settings value standing for a Python object that only this process holds."""
    name = (getattr(obj, "__qualname__", None) or type(obj).__name__) if callable(obj) else "tensors"
    name = re.sub(r"[<>]", "", str(name))[-80:] or "object"  # e.g. f.<locals>.<lambda> -> f.locals.lambda
    return f"<python: {name}>"


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(_PLACEHOLDER_RE.fullmatch(value))


def import_path_of(obj: Any) -> str | None:
    """``"module:qualname"`` when importing that gives back ``obj`` itself, else None.

    Objects of ``__main__``, lambdas and closures (``<locals>`` in the name) have none: a
    node process importing the path would not get the same object.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return None
    path = f"{module}:{qualname}"
    if not is_import_path(path):
        return None
    try:
        found = _resolve(path)
    except Exception:  # noqa: BLE001 - not importable by name: stays a Python object
        return None
    return path if found is obj else None


def _module_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """True when ``exc`` says ``module`` (or a parent package of it) does not exist, rather
    than that the module exists and one of *its* imports failed."""
    parts = module.split(".")
    return exc.name in {".".join(parts[:k]) for k in range(1, len(parts) + 1)}


def _resolve(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def import_object(path: str, field: str, what: str) -> Any:
    """Import ``"package.module:name"`` and return the attribute.

    Parameters
    ----------
    path
        The import path.
    field
        The setting it came from (``train.model``, ``data.dataset``), named in errors.
    what
        What the attribute should be, e.g. ``"a model factory"``, for the messages.

    Raises
    ------
    ConfigError
        Not an import path; the module cannot be found (the message says where p2pfl looked);
        importing the module raised (its error is quoted); the attribute does not exist.
    """
    if not is_import_path(path):
        raise ConfigError(field, path, f"{IMPORT_PATH_HELP} of {what}")
    module_name, _, attr = path.partition(":")
    module = _import_module(module_name, field, path)
    if module is None:
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)  # the documented fallback: the current directory
            importlib.invalidate_caches()
            module = _import_module(module_name, field, path)
            if module is None:
                sys.path.remove(cwd)
            else:
                log.info("%s: imported %s from the current directory %s", field, module_name, cwd)
    if module is None:
        raise ConfigError(field, path, _not_found(module_name, what))
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(field, path, f"{what}; module {module_name} has no attribute {attr!r}") from None
    return obj


def _import_module(name: str, field: str, path: str) -> Any:
    """The module, or None when it (or a parent package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if _module_missing(exc, name):
            return None
        raise ConfigError(field, path, f"a module that imports; importing {name} failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        raise ConfigError(field, path, f"a module that imports; importing {name} raised "
                                       f"{type(exc).__name__}: {exc}") from exc


def _not_found(module: str, what: str) -> str:
    return (f"{IMPORT_PATH_HELP} of {what}; no module named {module!r} on sys.path or in the "
            f"current directory {os.getcwd()} (install it, put its folder on PYTHONPATH, or run "
            "from the folder that holds it)")


def call_with(fn: Callable[..., Any], field: str, signature: str, **available: Any) -> Any:
    """Call ``fn`` with those of ``available`` its signature takes (all of them with ``**kwargs``).

    A user's factory may take any subset of what p2pfl offers (``input_shape``, ``classes``,
    ``seed``, ...), by name; a required parameter p2pfl does not offer is a ConfigError that
    quotes the documented ``signature``.
    """
    if not callable(fn):
        raise ConfigError(field, fn, f"a callable {signature}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: offer everything
        return fn(**available)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    kwargs: dict[str, Any] = {}
    for name, p in params.items():
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            if p.kind is inspect.Parameter.POSITIONAL_ONLY and p.default is p.empty:
                raise ConfigError(field, _name(fn), f"a callable {signature} (parameters by name; "
                                                    f"{name!r} is positional-only)")
            continue
        if name in available:
            kwargs[name] = available[name]
        elif p.default is p.empty:
            raise ConfigError(field, _name(fn), f"a callable {signature}; it requires {name!r}, which p2pfl "
                                                f"does not pass (it passes {', '.join(available)})")
    return fn(**kwargs)


def _name(fn: Any) -> str:
    return import_path_of(fn) or getattr(fn, "__qualname__", None) or repr(fn)


def import_roots(paths: Iterable[Any]) -> list[str]:
    """The ``sys.path`` entries the modules of these import paths were loaded from.

    ``p2pfl run --processes`` puts them on the node processes' ``PYTHONPATH``, so that a
    module this process found (in a folder added to ``sys.path`` at run time, or in the
    current directory) is found by the children too. Built-in names, placeholders and
    modules not yet imported are skipped.
    """
    roots: list[str] = []
    for path in paths:
        if not is_import_path(path):
            continue
        module_name = str(path).partition(":")[0]
        module = sys.modules.get(module_name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        root = _root_of(Path(file).resolve(), module_name)
        if root is not None and root not in roots:
            roots.append(root)
    return roots


def _root_of(file: Path, module_name: str) -> str | None:
    parts = module_name.split(".")
    base = file.parent if file.name != "__init__.py" else file.parent.parent
    # a module a.b.c lives in <root>/a/b/c.py or <root>/a/b/c/__init__.py
    for _ in parts[:-1]:
        base = base.parent
    return str(base)


def merged_pythonpath(roots: Iterable[str], env: Mapping[str, str]) -> str | None:
    """``PYTHONPATH`` for child processes: the inherited value, then ``roots`` (appended, so a
    folder that also holds other packages, e.g. a checkout of p2pfl, shadows nothing)."""
    parts = list(dict.fromkeys([*[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p], *roots]))
    return os.pathsep.join(parts) if parts else None


__all__ = [
    "IMPORT_PATH_HELP",
    "call_with",
    "import_object",
    "import_path_of",
    "import_roots",
    "is_import_path",
    "is_placeholder",
    "merged_pythonpath",
    "placeholder",
]
