"""Tests of p2pfl.attacks.backdoor: the three backdoor kinds, where the trigger goes, and the plan's use of them."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from test_attacks import _flat, tiny_plan, tiny_trainer, view_for

from p2pfl.attacks import build_attack, check_params
from p2pfl.attacks.backdoor import AUX_CAP, Backdoor, check_backdoor_params, stamp
from p2pfl.cli import build_config
from p2pfl.data import TensorData
from p2pfl.errors import ConfigError
from p2pfl.plan import Plan


def images(n: int = 40, seed: int = 0, classes: int = 10) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5  # never 1.0: a stamped pixel is recognisable
    y = torch.arange(n, dtype=torch.int64) % classes
    return TensorData(x, y, classes)


def backdoor(kind: str, **params) -> Backdoor:
    test = images(60, seed=1)
    return Backdoor.build({"backdoor": kind, "target": "3:7", **params}, test=test, train=images(), aux=None, seed=0)


# --------------------------------------------------------------------------- the trigger


@pytest.mark.parametrize(("pos", "rows", "cols"), [("br", (5, 8), (5, 8)), ("bl", (5, 8), (0, 3)),
                                                   ("tr", (0, 3), (5, 8)), ("tl", (0, 3), (0, 3))])
def test_the_trigger_is_stamped_only_in_its_corner(pos, rows, cols):
    x = images(5).x
    before = x.clone()
    out = stamp(x, size=3, value=1.0, pos=pos)
    torch.testing.assert_close(x, before)  # a copy: the input is never stamped in place
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[rows[0]:rows[1], cols[0]:cols[1]] = True
    assert bool((out[:, :, inside] == 1.0).all())
    torch.testing.assert_close(out[:, :, ~inside], x[:, :, ~inside])


def test_the_trigger_refuses_tabular_data():
    tab = TensorData(torch.zeros(10, 4), torch.zeros(10, dtype=torch.int64), 2)
    with pytest.raises(ConfigError) as err:
        Backdoor.build({"backdoor": "trigger", "target": "0:1"}, test=tab, train=tab, aux=None, seed=0)
    assert err.value.field == "attack.backdoor"
    with pytest.raises(ConfigError) as err:
        stamp(tab.x, size=2, value=1.0, pos="br")
    assert err.value.field == "attack.backdoor"
    Backdoor.build({"backdoor": "class", "target": "0:1"}, test=tab, train=tab, aux=None, seed=0)  # fine


@pytest.mark.parametrize("p", [0.5, 0.2, 1.0])
def test_poison_stamps_a_fraction_p_of_the_batch_and_labels_it_t(p):
    bd = backdoor("trigger", poison_fraction=p, trigger_size=2)
    data = images(20, seed=4)
    x, y = data.x.clone(), data.y.clone()
    px, py = bd.poison(data.x, data.y, torch.Generator().manual_seed(0))
    torch.testing.assert_close(data.x, x)  # the own shard is never modified
    torch.testing.assert_close(data.y, y)
    changed = (px != x).flatten(1).any(dim=1)
    assert int(changed.sum()) == round(p * 20)
    rows, cols = bd.region(tuple(x.shape))
    assert bool((px[changed][:, :, rows, cols] == bd.trigger_value).all())
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[rows, cols] = False
    torch.testing.assert_close(px[:, :, mask], x[:, :, mask])  # nothing outside the patch moves
    assert bool((py[changed] == 7).all())
    torch.testing.assert_close(py[~changed], y[~changed])


def test_trigger_defaults_size_4_bottom_right_and_the_largest_pixel_value():
    bd = backdoor("trigger")
    assert (bd.trigger_size, bd.trigger_pos, bd.poison_fraction) == (4, "br", 0.5)
    assert bd.trigger_value == pytest.approx(float(images().x.max()))


def test_trigger_success_set_is_stamped_images_of_the_other_classes_labelled_t():
    test = images(60, seed=1)
    bd = Backdoor.build({"backdoor": "trigger", "target": "3:7", "trigger_value": 1.0}, test=test,
                        train=images(), aux=None, seed=0)
    assert len(bd.success_set) == int((test.y != 7).sum())
    assert bool((bd.success_set.y == 7).all())
    rows, cols = bd.region(tuple(test.x.shape))
    assert bool((bd.success_set.x[:, :, rows, cols] == 1.0).all())
    assert not bool((test.x[:, :, rows, cols] == 1.0).any())  # the clean test set is untouched


def test_trigger_aux_is_the_own_examples_of_other_classes_stamped():
    bd = backdoor("trigger")
    data = images(30, seed=5)
    aux = bd.aux_for(data, node=2)
    assert len(aux) == int((data.y != 7).sum()) and bool((aux.y == 7).all())
    rows, cols = bd.region(tuple(data.x.shape))
    assert bool((aux.x[:, :, rows, cols] == bd.trigger_value).all())
    big = images(3 * AUX_CAP, seed=6)
    assert len(bd.aux_for(big, node=2)) == AUX_CAP


# --------------------------------------------------------------------------- class and single


def test_class_backdoor_relabels_exactly_class_s():
    bd = backdoor("class")
    data = images(30, seed=2)
    px, py = bd.poison(data.x, data.y)
    torch.testing.assert_close(px, data.x)
    assert bool((py[data.y == 3] == 7).all())
    torch.testing.assert_close(py[data.y != 3], data.y[data.y != 3])
    aux = bd.aux_for(data)
    assert len(aux) == int((data.y == 3).sum()) and bool((aux.y == 7).all())
    torch.testing.assert_close(aux.x, data.x[data.y == 3])
    test = images(60, seed=1)
    torch.testing.assert_close(bd.success_set.x, test.x[test.y == 3])
    assert bool((bd.success_set.y == 7).all())


def test_class_backdoor_needs_the_source_class_only_for_aux_only_attacks():
    bd = backdoor("class")
    none_of_s = TensorData(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 4]), 10)
    assert len(bd.aux_for(none_of_s)) == 0
    with pytest.raises(ConfigError) as err:
        bd.check_holds(none_of_s.y.numpy(), node=3)
    assert err.value.field == "attack.target" and "node 3" in str(err.value)
    plan = tiny_plan()
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    test = TensorData(x, torch.arange(30, dtype=torch.int64) % 3, 3)
    plan.backdoor = Backdoor.build({"backdoor": "class", "target": "1:2"}, test=test, train=test, aux=None, seed=0)
    view = view_for(tiny_trainer(), _flat())
    own = TensorData(x, torch.zeros(30, dtype=torch.int64), 3)  # holds no example of class 1
    view = type(view)(**{**view.__dict__, "data": own})
    with pytest.raises(ConfigError):
        build_attack("boost", {}, plan=plan, node=0).craft(view)
    out = build_attack("pgd", {}, plan=plan, node=0).craft(view)  # trains honestly: nothing to relabel
    assert "mal_loss" not in out.info and out.info["norm_ratio"] <= 1 + 1e-4


def test_single_poison_appends_the_aux_set():
    aux = images(2, seed=9)
    bd = Backdoor.single(aux)
    data = images(5)
    px, py = bd.poison(data.x, data.y)
    torch.testing.assert_close(px, torch.cat([data.x, aux.x]))
    torch.testing.assert_close(py, torch.cat([data.y, aux.y]))
    assert bd.aux_for(data) is aux and bd.success_set is aux


def test_random_target_is_drawn_from_the_seed():
    a = Backdoor.build({"backdoor": "class"}, test=images(60), train=images(), aux=None, seed=3)
    b = Backdoor.build({"backdoor": "class"}, test=images(60), train=images(), aux=None, seed=3)
    assert (a.source, a.target) == (b.source, b.target) and a.source != a.target


@pytest.mark.parametrize(("params", "field"), [
    ({"backdoor": "pattern"}, "attack.backdoor"),
    ({"poison_fraction": 0.0}, "attack.poison_fraction"),
    ({"poison_fraction": 1.5}, "attack.poison_fraction"),
    ({"trigger_size": 0}, "attack.trigger_size"),
    ({"trigger_value": "white"}, "attack.trigger_value"),
    ({"trigger_pos": "middle"}, "attack.trigger_pos"),
])
def test_invalid_backdoor_parameters_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        check_params("pgd", params)
    assert err.value.field == field
    with pytest.raises(ConfigError):
        check_backdoor_params(params)


def test_a_trigger_larger_than_the_image_is_refused():
    with pytest.raises(ConfigError) as err:
        backdoor("trigger", trigger_size=9)
    assert err.value.field == "attack.trigger_size"


def test_cli_backdoor_flag_sets_the_attack_parameter():
    cfg = build_config(None, {"adversaries": 1, "attack": "pgd", "backdoor": "trigger", "target": "1:7"}, ())
    assert cfg.attack.params["backdoor"] == "trigger" and cfg.attack.params["target"] == "1:7"


# --------------------------------------------------------------------------- attacks and the plan


def test_aux_only_attacks_train_on_the_nodes_own_backdoor_examples():
    data_plan = tiny_plan()
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    test = TensorData(x, (x[:, 0] > 0).to(torch.int64), 3)
    data_plan.backdoor = Backdoor.build({"backdoor": "class", "target": "1:2"}, test=test, train=test,
                                        aux=None, seed=0)
    atk = build_attack("boost", {"max_steps": 3, "mal_epochs": 1}, plan=data_plan, node=0)
    view = view_for(tiny_trainer(), _flat())
    atk.craft(view)
    assert len(atk.aux) == int((view.data.y == 1).sum()) and bool((atk.aux.y == 2).all())


@pytest.mark.parametrize("kind", ["single", "class", "trigger"])
def test_plan_builds_each_kind_and_never_stamps_the_clean_test_set(kind):
    cfg = tiny_config(**{"nodes": 4, "adversaries": 1, "attack.name": "pgd", "attack.backdoor": kind,
                         "attack.target": "5:7"})
    plan = Plan.build(cfg)
    clean = Plan.build(tiny_config(**{"nodes": 4}))  # no attack: the whole clean test set
    bd = plan.backdoor
    assert bd is not None and bd.kind == kind
    if kind == "single":
        assert bd.success_set is plan.aux and len(plan.test) == len(clean.test) - 1
    else:
        assert plan.aux is None
        torch.testing.assert_close(plan.test.x, clean.test.x)  # never stamped or relabelled
        torch.testing.assert_close(plan.test.y, clean.test.y)
        assert bool((bd.success_set.y == 7).all())
        assert plan.describe()["backdoor"]["target"] == 7
    if kind == "trigger":
        assert bd.trigger_value == pytest.approx(1.0)  # fmnist pixels are scaled to [0, 1]
        assert len(bd.success_set) == min(1000, int((clean.test.y != 7).sum()))
        bd.poison(plan.bundle.train.x[:50], plan.bundle.train.y[:50], torch.Generator().manual_seed(0))
        torch.testing.assert_close(plan.test.x, clean.test.x)
