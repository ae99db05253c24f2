"""Files shipped inside the package: role profiles and topology files, found from any directory.

``p2pfl/profiles/<name>.toml`` are the role profiles of ``--role 0=boost`` and
``[[roles]] profile = "boost"``; ``p2pfl/topologies/<name>.toml`` are example graphs for
``--topology topologies/torus.toml``. A path that exists always wins; a bare name, or a
path into one of those folders (``topologies/ring.toml``, ``nodes/stealth.toml`` from
older commands) that does not exist here, is looked up among the shipped files.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"
TOPOLOGIES_DIR = PACKAGE_DIR / "topologies"

# Relative folders whose missing files are looked up among the shipped ones.
_SHIPPED_PARENTS = {"", ".", "nodes", "profiles", "topologies", "p2pfl/profiles", "p2pfl/topologies"}


def shipped(folder: Path) -> list[str]:
    """Names (file stems) of the TOML files shipped in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.toml"))


def locate(spec: str | os.PathLike[str], folder: Path) -> Path | None:
    """The file ``spec`` means: itself if it exists, else the shipped file of that name in
    ``folder`` (for a bare name or a path into a known folder); None if neither exists."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_absolute() or path.parent.as_posix() not in _SHIPPED_PARENTS:
        return None
    candidate = folder / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    return candidate if candidate.is_file() else None


def looks_like_path(spec: str) -> bool:
    """A topology spec that names a file rather than a generator: ``*.toml`` or with a separator."""
    return spec.endswith(".toml") or os.sep in spec or "/" in spec


__all__ = ["PROFILES_DIR", "TOPOLOGIES_DIR", "locate", "looks_like_path", "shipped"]
