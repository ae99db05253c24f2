"""docs/: links resolve, pages stay in step with the code, and nothing points outside the repository."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from p2pfl.attacks import ATTACKS
from p2pfl.filters import FILTERS
from p2pfl.launch import Deployment

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINKED = [ROOT / "README.md", *PAGES]

# Assembled from parts, so that this file does not match its own patterns.
DESIGN_FILE = "DESIGN" + ".md"
ISSUE_REF = re.compile(r"\b" + "iss" + r"ues?\s+#?\d+", re.IGNORECASE)

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_SKIP_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".npy", ".npz", ".gz", ".pdf", ".pyc", ".zip", ".ico"}


def _prose(text: str) -> str:
    """Markdown without its fenced code blocks (links inside them are not links)."""
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _prose(path.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, flags=re.M)}


def _links(path: Path) -> list[str]:
    return _LINK.findall(_prose(path.read_text(encoding="utf-8")))


def _repo_files() -> list[Path]:
    """Every file of the repository: git's view when there is one (tracked and new, not ignored)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "runs", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache",
                ".hypothesis"}
        files = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if d not in skip and not d.endswith(".egg-info")]
            files.extend(Path(dirpath) / f for f in filenames)
        return files


def _load_gen_config():
    spec = importlib.util.spec_from_file_location("gen_config", DOCS / "gen_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_config", module)
    spec.loader.exec_module(module)
    return module


def test_the_pages_exist_and_the_readme_links_them():
    names = {p.name for p in PAGES}
    assert {"README.md", "protocol.md", "threat-model.md", "filters.md", "deployment.md",
            "configuration.md"} <= names
    readme_links = _links(ROOT / "README.md")
    for page in ("docs/README.md", "docs/protocol.md", "docs/threat-model.md", "docs/filters.md",
                 "docs/deployment.md", "docs/configuration.md"):
        assert page in readme_links, f"README.md does not link {page}"
    index_links = _links(DOCS / "README.md")
    for page in PAGES:
        if page.name != "README.md":
            assert page.name in index_links, f"docs/README.md does not link {page.name}"


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_every_relative_link_points_to_an_existing_file(path):
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n[ok](page.md#top) [gone](missing.md) [bad anchor](page.md#nowhere)\n"
                    "```\n[in code](not-a-link.md)\n```\n", encoding="utf-8")
    assert _links(page) == ["page.md#top", "missing.md", "page.md#nowhere"]
    assert _anchors(page) == {"top"}
    assert _slug("Handshake (hello)") == "handshake-hello"


def test_no_file_points_to_the_design_notes_or_to_issue_numbers():
    offenders = []
    for path in _repo_files():
        if path.suffix.lower() in _SKIP_SUFFIXES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if DESIGN_FILE in line or ISSUE_REF.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:100]}")
    assert not offenders, "references to files outside the repository or to issue numbers:\n" + "\n".join(offenders)


def test_the_reference_patterns_match_what_they_should():
    word = "Iss" + "ue"  # not written out, so that this file passes the check above
    assert ISSUE_REF.search(f"see {word} 13, acceptance 2") and ISSUE_REF.search(f"({word.lower()} #5)")
    assert ISSUE_REF.search(f"{word.lower()}s 4 and 5")
    assert not ISSUE_REF.search(f"t{word.lower()} 3") and not ISSUE_REF.search(f"{word.lower()}s with 3 nodes")


def test_every_attack_is_documented():
    text = (DOCS / "threat-model.md").read_text(encoding="utf-8")
    missing = [name for name in ATTACKS if f"`{name}`" not in text]
    assert not missing, f"docs/threat-model.md does not describe the attacks {missing}"


def test_every_filter_is_documented():
    text = (DOCS / "filters.md").read_text(encoding="utf-8")
    headings = {m.group(1).strip() for m in re.finditer(r"^###\s+(.*)$", text, flags=re.M)}
    missing = [name for name in FILTERS if name not in headings]
    assert not missing, f"docs/filters.md has no section for the filters {missing}"


def test_every_rejection_reason_is_documented():
    """Reasons are found in the source, so a new one fails here until protocol.md lists it."""
    package = ROOT / "p2pfl"
    patterns = (
        re.compile(r"(?:ProtocolError|DecodeError)\(\s*\"([a-z-]+)\""),
        re.compile(r"\breject\([^,()]*,\s*\"([a-z-]+)\""),
        re.compile(r"reason, frames = \"([a-z-]+)\""),
    )
    found: set[str] = set()
    for path in package.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for pattern in patterns:
            found.update(pattern.findall(source))
    assert {"malformed", "schema", "replay", "checksum", "handshake", "frames", "nonfinite-merge"} <= found
    table = (DOCS / "protocol.md").read_text(encoding="utf-8")
    missing = sorted(r for r in found if f"| `{r}` |" not in table)
    assert not missing, f"docs/protocol.md does not list the rejection reasons {missing}"


def test_the_configuration_page_is_generated_from_the_code():
    gen = _load_gen_config()
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert current == gen.render(), "docs/configuration.md is out of date: run python docs/gen_config.py"


def test_the_configuration_page_names_every_setting():
    import dataclasses

    from p2pfl import config

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for cls, prefix in ((config.RunConfig, ""), (config.DataConfig, "data."), (config.TrainConfig, "train."),
                        (config.NetConfig, "net.")):
        for f in dataclasses.fields(cls):
            assert f"| `{prefix}{f.name}` |" in text, f"{prefix}{f.name}"
    for cls in FILTERS.values():
        for key in cls.PARAMS:
            assert f"| `defence.{key}` |" in text, key


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_tables_have_a_consistent_number_of_columns(path):
    """A stray | inside a cell (e.g. a norm written ||x||) splits it and shifts the table."""
    bad = []
    width = None
    previous_was_row = False
    for line in _prose(path.read_text(encoding="utf-8")).splitlines():
        if not line.startswith("|"):
            previous_was_row = False
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        if not previous_was_row:
            width = cells
        elif cells != width:
            bad.append(line[:80])
        previous_was_row = True
    assert not bad, f"{path.name}: rows with another number of columns than their header: {bad}"


def test_the_deployment_page_example_is_a_valid_deployment(tmp_path):
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, flags=re.S).group(1)
    path = tmp_path / "cluster.toml"
    path.write_text(block, encoding="utf-8")
    dep = Deployment.from_toml(path)
    assert dep.config.nodes == 10 and len(dep.addresses) == 10
    assert dep.keys_dir == (tmp_path / "keys").resolve()
    for command in ("p2pfl node --deployment cluster.toml --id-from-env SLURM_PROCID", "p2pfl keygen keys --nodes 10",
                    "--insecure", "p2pfl report"):
        assert command in text


def test_the_cli_commands_the_deployment_page_names_exist(capsys):
    from p2pfl.cli import main  # the console script's entry point

    for command, options in (("node", ("--deployment", "--id", "--id-from-env", "--listen", "--peer",
                                       "--keys-dir", "--out", "--insecure", "--data-dir")),
                             ("keygen", ("--nodes", "--overwrite")), ("run", ("--processes", "--role")),
                             ("report", ())):
        main([command, "--help"])
        shown = capsys.readouterr().out
        assert f"p2pfl {command}" in shown
        for option in options:
            assert option in shown, f"p2pfl {command} has no {option}"
