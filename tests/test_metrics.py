"""Summaries: benign aggregates per round, attack success by hops and by malicious neighbours."""

from __future__ import annotations

import pytest

from p2pfl.metrics import read_records, summarize


def rec(rnd, node, role="benign", **kw):
    return {"round": rnd, "node": node, "role": role, **kw}


def test_summary_aggregates_benign_nodes_only():
    records = [
        rec(1, 0, accuracy=0.5, attack_success=1.0), rec(1, 1, accuracy=0.7, attack_success=0.0),
        rec(1, 2, "boost", accuracy=0.1, attack_success=1.0, attack={"delta_norm": 4.0, "flag": True}),
        rec(2, 0, accuracy=0.6, attack_success=0.0), rec(2, 1, accuracy=0.8, attack_success=0.0),
        rec(2, 2, "boost", accuracy=0.2, attack_success=1.0, attack={"delta_norm": 6.0}),
    ]
    s = summarize(records, hops={0: 1, 1: 2, 2: 0}, malicious_neighbours={0: 1, 1: 0, 2: 0})
    r1 = s["rounds"][0]
    assert r1["accuracy_mean"] == 0.6 and r1["accuracy_min"] == 0.5 and r1["accuracy_max"] == 0.7
    assert r1["attack_success_mean"] == 0.5
    assert r1["attack_success_by_hops"] == {"1": 1.0, "2": 0.0}
    assert r1["attack_success_by_malicious_neighbours"] == {"0": 0.0, "1": 1.0}
    assert r1["attack"] == {"delta_norm": 4.0}  # adversaries' own statistics; booleans skipped
    assert s["final"]["round"] == 2 and s["final"]["attack_success_mean"] == 0.0
    assert [n["node"] for n in s["nodes"]] == [0, 1, 2]


def test_summary_counts_rounds_within_the_benign_distance_spread():
    flags = [1.0, 0.0, 0.5, 1.0]  # round 3: one of two adversaries inside (mean 0.5) does not count
    records = []
    for r, f in enumerate(flags, start=2):
        records += [rec(r, 0, accuracy=0.5),
                    rec(r, 1, "altmin", attack={"prev_update_within": f, "prev_within": 0.0})]
    records.append(rec(1, 1, "altmin", attack={"delta_norm": 1.0}))  # round 1: nothing to compare
    s = summarize(records)
    assert s["stealth"] == {"update_rounds_measured": 4, "update_rounds_within_benign": 2,
                            "delta_rounds_measured": 4, "delta_rounds_within_benign": 0}
    assert "stealth" not in summarize([rec(1, 0, accuracy=0.5)])


def test_truncated_last_line_is_skipped(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"round": 1, "node": 0}\n{"round": 1, "no')
    assert read_records(path) == [{"round": 1, "node": 0}]


def test_summary_gives_the_mean_norm_ratio_and_announced_accuracy_of_active_rounds():
    records = [rec(1, 0, accuracy=0.5), rec(1, 1, "boost", attack={"active": 0.0, "norm_ratio": 1.0,
                                                                       "announced_acc": 0.9})]
    for r, (ratio, acc) in enumerate([(2.0, 0.5), (4.0, 0.7)], start=2):
        records += [rec(r, 0, accuracy=0.5),
                    rec(r, 1, "boost", attack={"active": 1.0, "norm_ratio": ratio, "announced_acc": acc}),
                    rec(r, 2, "boost", attack={"active": 1.0, "norm_ratio": ratio + 2, "announced_acc": acc})]
    stealth = summarize(records)["stealth"]
    assert stealth["norm_ratio_mean"] == 4.0  # rounds 2 and 3: means 3 and 5; the delayed round 1 is left out
    assert stealth["norm_ratio_max"] == 5.0
    assert stealth["announced_acc_mean"] == 0.6
    assert "update_rounds_measured" not in stealth


# ---- TensorBoard ------------------------------------------------------------------------------------
def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_tensorboard_writer_writes_each_nodes_records_by_round(tmp_path):
    # Arrange
    from p2pfl.metrics import TensorBoardWriter

    records = [
        rec(1, 0, accuracy=0.5, attack_success=1.0, wall=1.5, time={"round": 1.2},
            filter={"norm_in": {"1": 3.0, "2": 5.0}, "norm_out": {"1": 1.0, "2": 1.0}}),
        rec(1, 2, "boost", accuracy=0.1, attack={"norm_ratio": 4.0, "flag": True}, wall=1.4),
        rec(2, 0, accuracy=0.75, attack_success=0.0, wall=3.0, time={"round": 1.5},
            filter={"norm_in": {"1": 2.0, "2": 2.0}, "norm_out": {"1": 2.0, "2": 2.0}}),
        rec(2, 0, accuracy=float("nan")) | {"node": 0, "round": 3},  # NaN: nothing written
        {"note": "not a record"},
    ]

    # Act
    with TensorBoardWriter(tmp_path / "tb", start=1000.0) as tb:
        for r in records:
            tb.write(r)

    # Assert
    node0 = _scalars(tmp_path / "tb" / "node-0")
    assert [(e.step, e.value) for e in node0["accuracy"]] == [(1, 0.5), (2, 0.75)]
    assert [e.wall_time for e in node0["accuracy"]] == [1001.5, 1003.0]
    assert [e.value for e in node0["attack_success"]] == [1.0, 0.0]
    assert [e.value for e in node0["filter/norm_in_mean"]] == [4.0, 2.0]
    assert [e.value for e in node0["filter/norm_out/2"]] == [1.0, 2.0]
    assert [e.value for e in node0["time/round"]] == pytest.approx([1.2, 1.5])  # float32 in the event file
    node2 = _scalars(tmp_path / "tb" / "node-2")
    assert set(node2) == {"accuracy", "attack/norm_ratio"}  # booleans are not scalars
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["node-0", "node-2"]


def test_tensorboard_without_the_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    from p2pfl.errors import P2PFLError
    from p2pfl.metrics import TensorBoardWriter

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if missing
    with pytest.raises(P2PFLError, match=r"pip install 'p2pfl\[tensorboard\]'"):
        TensorBoardWriter(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


def test_a_run_with_tensorboard_logs_every_node_by_round(tmp_path):
    # Arrange: a tiny ring with an attack and a filter, the folder given in the settings
    from conftest import tiny_config

    from p2pfl import Experiment

    cfg = tiny_config(nodes=3, rounds=2, adversaries=1, **{"attack.name": "boost", "defence.name": "topk-clip",
                                                           "data.max_train": 300, "data.max_test": 100,
                                                           "train.epochs": 1, "report.tensorboard": str(tmp_path / "tb")})

    # Act
    result = Experiment(cfg).run(plots=False)

    # Assert
    adversary = result.adversaries[0]
    for node in range(3):
        scalars = _scalars(tmp_path / "tb" / f"node-{node}")
        assert [e.step for e in scalars["accuracy"]] == [1, 2]
        assert [e.step for e in scalars["attack_success"]] == [1, 2]
        if node == adversary:
            assert any(tag.startswith("attack/") for tag in scalars)
        else:
            assert [e.step for e in scalars["filter/norm_in_mean"]] == [1, 2]
            assert [e.step for e in scalars["filter/norm_out_mean"]] == [1, 2]
    assert result.run.extra["tensorboard"] == str(tmp_path / "tb")
    assert cfg.digest() == cfg.replace(report=type(cfg.report)()).digest()  # where logs go is not the run


def test_the_tensorboard_flag_sets_the_report_folder():
    from p2pfl.cli import build_config

    config = build_config(None, {"tensorboard": "runs/tb", "model": "pkg.models:net"}, ())
    assert config.report.tensorboard == "runs/tb" and config.train.model == "pkg.models:net"
    assert build_config(None, {}, ("report.tensorboard=elsewhere",)).report.tensorboard == "elsewhere"
