"""The benchmark writer records the command line that actually ran."""

from __future__ import annotations

import json
import types

import benchmarks._common as common
from benchmarks import __main__ as bench
from benchmarks._common import Result


def test_records_name_the_command_as_typed_with_only(tmp_path, monkeypatch):
    # Arrange: results go to tmp_path; the "filter" group is a stub with one row.
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    stub = types.SimpleNamespace(run=lambda quick: [Result(
        name="filter-x", what="stub", unit="s", baseline=1.0, framework=1.0, ratio=1.0, target=2.0,
        higher_is_better=False, reps=1)])
    monkeypatch.setattr(bench.importlib, "import_module", lambda name: stub)

    # Act
    assert bench.main(["--quick", "--only", "filter"]) == 0

    # Assert: the group file, the summary and the README all carry the real command.
    want = "python -m benchmarks --quick --only filter"
    assert json.loads((tmp_path / "filter-quick.json").read_text())["command"] == want
    assert json.loads((tmp_path / "summary-quick.json").read_text())["command"] == want
    assert f"Written by `{want}`" in (tmp_path / "README-quick.md").read_text()
