"""README tables are stored results: every table has a marker, its file, and the commit it was measured at.

Convention: every markdown table of README.md is immediately preceded by a line
``<!-- table: results/<dir>/<file>.md -->``; that file holds exactly the table's lines, and
``results/<dir>/meta.json`` names the command that made it and the git commit it ran at.
``examples/make_results.py`` (``make results``) writes them; the second half of this file
tests its table writer and its ``ONLY`` handling without running any experiment.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from p2pfl.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- table: (results/[\w./-]+\.md) -->$")
COMMIT = re.compile(r"^[0-9a-f]{40}(-dirty)?$")


def readme_tables(text: str) -> list[tuple[int, str | None, str]]:
    """(first line number, the marker's path or None, the table's lines) for every table outside code fences."""
    lines = text.splitlines()
    found: list[tuple[int, str | None, str]] = []
    fenced = False
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not lines[i].startswith("|"):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        found.append((start + 1, marker.group(1) if marker else None, "\n".join(lines[start:i])))
    return found


def test_readme_has_tables():
    assert len(readme_tables(README.read_text(encoding="utf-8"))) >= 5


@pytest.mark.parametrize("line, path, table", readme_tables(README.read_text(encoding="utf-8")),
                         ids=lambda v: str(v) if isinstance(v, int) else None)
def test_every_readme_table_is_a_stored_result(line, path, table):
    assert path is not None, (f"README.md line {line}: a table without a '<!-- table: results/<dir>/<file>.md -->' "
                              "line right above it")
    stored = ROOT / path
    assert stored.is_file(), f"README.md line {line}: {path} does not exist"
    assert stored.read_text(encoding="utf-8").rstrip("\n") == table, (
        f"README.md line {line}: the table differs from {path} (rerun `make results` or copy the file in)")
    meta_path = stored.parent / "meta.json"
    assert meta_path.is_file(), f"{path}: no meta.json beside it"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert COMMIT.match(str(meta.get("commit", ""))), f"{meta_path}: 'commit' must be 40 hex digits (+ -dirty)"
    assert str(meta.get("command", "")).strip(), f"{meta_path}: 'command' is missing"


def test_readme_tables_are_not_shared():
    paths = [p for _, p, _ in readme_tables(README.read_text(encoding="utf-8")) if p]
    assert len(paths) == len(set(paths))


def test_finds_tables_and_markers_outside_code_fences():
    text = ("intro\n<!-- table: results/x/a.md -->\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\n| not | a table |\n```\n"
            "| c |\n|---|\n")
    assert readme_tables(text) == [(3, "results/x/a.md", "| a | b |\n|---|---|\n| 1 | 2 |"), (10, None, "| c |\n|---|")]


# ---- examples/make_results.py: the writer and ONLY, no experiments ------------------------------------


@pytest.fixture(scope="module")
def mr():
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "examples" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("make_results", None)


def test_markdown_table_and_tables_in_round_trip(mr):
    table = mr.markdown_table(["a", "b"], [[1, "x"], [2.5, "y"]])
    assert table == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |"
    text = f"# title\n\n{table}\n\nprose | with a bar\n\n```\n| code |\n```\n{table}\n"
    assert mr.tables_in(text) == [table, table]
    assert readme_tables(f"<!-- table: results/t/t.md -->\n{table}\n")[0][2] == table


def test_demo_table_from_round_records(mr):
    rounds = {
        "none": [{"round": t, "accuracy_mean": 0.5 + t / 100, "attack_success_mean": 0.25} for t in range(1, 13)],
        "topk-clip": [{"round": t, "accuracy_mean": 0.6 + t / 100, "attack_success_mean": 0.0} for t in range(1, 13)],
    }
    assert mr.demo_table(rounds).splitlines() == [
        "| round | 1 | 4 | 8 | 12 |",
        "|---|---|---|---|---|",
        "| no defence: accuracy / attack success | 0.510 / 0.25 | 0.540 / 0.25 | 0.580 / 0.25 | 0.620 / 0.25 |",
        "| `topk-clip`: accuracy / attack success | 0.610 / 0.00 | 0.640 / 0.00 | 0.680 / 0.00 | 0.720 / 0.00 |",
    ]


def test_defence_matrix_marks_refused_cells(mr):
    def cell(topology, attack, defence, final):
        return {"settings": {"topology": topology, "attack.name": attack, "defence.name": defence},
                "summary": None if final is None else {"final": final}}

    cells = [cell("full", "boost", "none", {"accuracy_mean": 0.684, "attack_success_mean": 1.0}),
             cell("full", "boost", "krum", {"accuracy_mean": 0.7531, "attack_success_mean": 0.0}),
             cell("ring", "boost", "none", {"accuracy_mean": 0.725, "attack_success_mean": 0.2222}),
             cell("ring", "boost", "krum", None)]
    assert mr.defence_matrix(cells).splitlines() == [
        "| graph, attack | none | krum |", "|---|---|---|",
        "| full, boost | .684 / 1.00 | .753 / 0 |", "| ring, boost | .725 / .22 | n/a |"]


def test_performance_table_marks_missed_targets(mr):
    def row(name, ratio, met, target=">= 0.85"):
        return {"name": name, "ratio": ratio, "met": met, "target_text": target, "framework": 1.0}

    table = mr.performance_table({"overhead": {"results": [
        row("overhead 10 nodes inprocess", 0.868, True), row("overhead 10 nodes processes", 0.173, False)]}})
    line = next(x for x in table.splitlines() if "torch loop" in x)
    assert "0.87 in-process;" in line
    assert "0.17 with `--processes` — **missed**" in line
    assert "≥ 0.85" in line
    assert "not measured" in next(x for x in table.splitlines() if x.startswith("| transport"))


def test_write_tables_stores_lines_and_meta(mr, tmp_path):
    entry = mr.Entry("t", "t/sub", "a test", (("python", "-c", "pass"),), lambda run: {})
    folder = mr.write_tables(entry, {"a.md": "| a |\n|---|\n| 1 |\n"},
                             {"command": "python -c pass", "commit": "0" * 40}, results=tmp_path)
    assert (folder / "a.md").read_text(encoding="utf-8") == "| a |\n|---|\n| 1 |\n"
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    assert meta == {"command": "python -c pass", "commit": "0" * 40, "tables": ["a.md"]}


def test_only_selects_a_subset_in_order(mr):
    assert [e.name for e in mr.select("estimation, demo", full_data=False)] == ["demo", "estimation"]
    assert [e.name for e in mr.select("performance", full_data=False)] == ["performance"]


def test_default_selection_leaves_out_full_data_and_named_only_entries(mr):
    default = {e.name for e in mr.select(None, full_data=False)}
    assert {"demo", "defence_table", "performance"} <= default
    assert not {e.name for e in mr.ENTRIES if e.needs_full_data} & default
    assert "robustness_matrix_full" not in default
    with_full = {e.name for e in mr.select("", full_data=True)}
    assert {e.name for e in mr.ENTRIES if e.needs_full_data} <= with_full


def test_only_rejects_unknown_and_full_data_names(mr):
    with pytest.raises(ConfigError) as exc:
        mr.select("demo,nope", full_data=False)
    assert exc.value.field == "ONLY" and "demo" in str(exc.value) and "nope" in str(exc.value)
    with pytest.raises(ConfigError, match="FULL=1"):
        mr.select("paper_full", full_data=False)
    assert [e.name for e in mr.select("paper_full", full_data=True)] == ["paper_full"]
    with pytest.raises(ConfigError):
        mr.select(" , ", full_data=False)


def test_main_reports_a_bad_only_with_exit_2(mr, capsys):
    assert mr.main(["--only", "nope"]) == 2
    assert "ONLY" in capsys.readouterr().err


def test_main_env_only(mr, monkeypatch, capsys):
    monkeypatch.setenv("ONLY", "nope")
    assert mr.main([]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_every_sweep_entry_validates_at_its_reduced_size(mr):
    """The reduced sizes are real settings: each sweep command's --set values build valid cells."""
    from p2pfl.sweep import Sweep

    checked = 0
    for entry in mr.ENTRIES:
        for argv in entry.commands:
            if "sweep" not in argv:
                continue
            path = ROOT / argv[argv.index("sweep") + 1]
            sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
            overrides = {k: mr_value(v) for k, _, v in (s.partition("=") for s in sets)}
            assert Sweep.from_toml(path, overrides).validate(), (entry.name, argv)
            checked += 1
    assert checked >= 3


def mr_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
