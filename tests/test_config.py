"""Settings: validation names the field and the allowed values; TOML round trips."""

from __future__ import annotations

import pytest

from p2pfl.config import RunConfig
from p2pfl.errors import ConfigError


def test_defaults_are_valid_and_round_trip_through_toml(tmp_path):
    cfg = RunConfig(nodes=5, rounds=3).with_overrides({"attack.name": "boost", "attack.lam": 4.0})
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    back = RunConfig.from_toml(path)
    assert back == cfg
    assert back.attack.params["lam"] == 4.0
    assert back.digest() == cfg.digest()


def test_an_override_replaces_a_parameter_the_file_already_sets(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[attack]\nname = "altmin"\nlam = 10\n\n[defence]\nname = "topk-clip"\nkappa = 0.1\n')
    cfg = RunConfig.from_toml(path).with_overrides({"attack.lam": 20, "defence.kappa": 0.2, "attack.rho": 0.5})
    assert cfg.attack.params == {"lam": 20, "rho": 0.5}
    assert cfg.defence.params == {"kappa": 0.2}
    assert cfg.attack.name == "altmin"


@pytest.mark.parametrize(
    ("overrides", "field", "hint"),
    [
        ({"nodes": 1}, "nodes", "at least 2"),
        ({"mixing": "avg"}, "mixing", "metropolis, uniform"),
        ({"adversaries": 10}, "adversaries", "at most 9"),
        ({"train.model": "resnet"}, "train.model", "cnn, paper-cnn, mlp"),
        ({"train.lr": -1.0}, "train.lr", "greater than 0"),
        ({"train.epochs": 1.5}, "train.epochs", "an integer"),
        ({"data.partition": "weird"}, "data.partition", "iid, dirichlet, shards"),
        ({"net.transport": "udp"}, "net.transport", "tcp, ipc"),
        ({"net.loss": 1.5}, "net.loss", "at most 1.0"),
        ({"net.duplicate": -0.1}, "net.duplicate", "at least 0.0"),
        ({"net.reorder": "often"}, "net.reorder", "a finite number"),
        ({"net.delay_ms": -5}, "net.delay_ms", "at least 0.0"),
        ({"net.jitter_ms": float("inf")}, "net.jitter_ms", "a finite number"),
        ({"net.fault_seed": 1.5}, "net.fault_seed", "an integer"),
        ({"placement": "everywhere"}, "placement", "random, central"),
        ({"bogus": 1}, "bogus", "unknown setting"),
        ({"train.bogus": 1}, "train.bogus", "unknown setting"),
    ],
)
def test_bad_values_name_field_and_allowed(overrides, field, hint):
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides(overrides)
    assert err.value.field == field
    assert hint in str(err.value)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("nodes = = 3")
    with pytest.raises(ConfigError) as err:
        RunConfig.from_toml(path)
    assert "bad.toml" in str(err.value)


def test_digest_ignores_where_data_lives_but_not_what_is_run():
    base = RunConfig()
    assert base.digest() == base.with_overrides({"data.data_dir": "/elsewhere"}).digest()
    assert base.digest() != base.with_overrides({"seed": 1}).digest()
    assert base.digest() != base.with_overrides({"defence.name": "topk-clip"}).digest()


def test_network_faults_from_toml_and_overrides(tmp_path):
    from p2pfl.cli import build_config

    path = tmp_path / "lossy.toml"
    path.write_text("[net]\nloss = 0.1\ndelay_ms = 20\njitter_ms = 5.5\nfault_seed = 3\n")
    cfg = RunConfig.from_toml(path)
    assert (cfg.net.loss, cfg.net.delay_ms, cfg.net.jitter_ms, cfg.net.fault_seed) == (0.1, 20, 5.5, 3)
    assert RunConfig.from_toml(path).with_overrides({"net.reorder": 0.2}).net.reorder == 0.2
    assert build_config(None, {}, ("net.loss=0.1", "net.duplicate=0.05")).net.duplicate == 0.05
    back = tmp_path / "back.toml"
    back.write_text(cfg.to_toml())
    assert RunConfig.from_toml(back) == cfg
    assert RunConfig().net.faults(0) is None  # a perfect network unless asked
    assert cfg.net.faults(cfg.seed).seed == 3
    # Fault settings are per-run settings like any other: they enter the digest.
    assert RunConfig().digest() != RunConfig().with_overrides({"net.loss": 0.1}).digest()


# ---- roles: per-node attacks and filters from nodes/*.toml profiles ---------------------------
def write_profile(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_roles_from_profiles_and_inline_tables(tmp_path):
    boost = write_profile(tmp_path, "boost", 'role = "booster"\n[attack]\nname = "boost"\nlam = 4.0\n')
    cfg = RunConfig.from_mapping({
        "nodes": 6,
        "roles": [
            {"nodes": [0, 1], "profile": str(boost)},
            {"nodes": [3], "defence": {"name": "clip", "tau": 1.0}},
            {"nodes": [4], "profile": str(boost), "attack": {"name": "signflip"}},  # inline wins
        ],
    })
    assert [r.role for r in cfg.roles] == ["booster", "benign", "booster"]
    assert cfg.roles[0].attack.params["lam"] == 4.0 and cfg.roles[0].adversarial
    assert cfg.roles[1].defence.name == "clip" and not cfg.roles[1].adversarial
    assert cfg.roles[2].attack.name == "signflip"
    # Resolved roles are inlined: the written config needs no profile files to load again.
    again = RunConfig.from_mapping(__import__("tomllib").loads(cfg.to_toml()))
    assert again == cfg and again.digest() == cfg.digest()


@pytest.mark.parametrize(
    ("roles", "field", "hint"),
    [
        ([{"nodes": [9]}], "roles.nodes", "0..5"),
        ([{"nodes": [1]}, {"nodes": [1, 2]}], "roles.nodes", "at most one role"),
        ([{"nodes": []}], "roles.nodes", "non-empty"),
        ([{"nodes": [0], "profile": "no-such-profile"}], "roles.profile", "profile name"),
        ([{"nodes": [0], "colour": "red"}], "roles", "keys nodes"),
        ([{"nodes": [0, 1, 2, 3, 4, 5], "attack": {"name": "boost"}}], "roles", "at least one benign"),
    ],
)
def test_bad_roles_name_the_problem(roles, field, hint):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_mapping({"nodes": 6, "roles": roles})
    assert err.value.field == field and hint in str(err.value)


def test_profiles_shipped_in_the_package_load_by_name():
    from p2pfl.resources import PROFILES_DIR, shipped

    names = shipped(PROFILES_DIR)
    assert {"benign", "boost", "stealth"} <= set(names)
    for name in names:
        cfg = RunConfig.from_mapping({"nodes": 4, "roles": [{"nodes": [0], "profile": name}]})
        assert cfg.roles[0].role


def test_report_section_is_per_machine_and_left_out_of_the_digest():
    base = RunConfig()
    logged = RunConfig.from_mapping({"report": {"tensorboard": "runs/tb"}})
    assert logged.report.tensorboard == "runs/tb"
    assert logged.digest() == base.digest()
    assert "report" not in base.to_mapping()  # runs from before the section keep their settings
    assert logged.to_mapping()["report"] == {"tensorboard": "runs/tb"}
    assert "report" not in logged.shared_mapping()  # what nodes compare at handshake
    assert RunConfig.from_mapping(logged.to_mapping()) == logged
    for bad in ("", 3):
        with pytest.raises(ConfigError, match="report.tensorboard"):
            RunConfig().with_overrides({"report.tensorboard": bad})
    with pytest.raises(ConfigError, match="report.tb"):
        RunConfig.from_mapping({"report": {"tb": "x"}})
