"""Summaries: benign aggregates per round, attack success by hops and by malicious neighbours."""

from __future__ import annotations

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
