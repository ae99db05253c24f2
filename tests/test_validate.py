"""The shared value checks: canonical types out, ConfigError naming field and allowed values."""

import math

import numpy as np
import pytest

from p2pfl import validate as v
from p2pfl.errors import ConfigError


def test_integer_accepts_numpy_ints_and_refuses_bools_floats_and_out_of_range():
    assert v.integer("f", np.int64(3), lo=0) == 3
    for bad in (True, 2.0, "2", None):
        with pytest.raises(ConfigError, match="f: .* an integer"):
            v.integer("f", bad)
    with pytest.raises(ConfigError, match="at least 1 and at most 3"):
        v.integer("f", 4, lo=1, hi=3)


def test_real_bounds_open_and_closed():
    assert v.real("x", 0, lo=0) == 0.0
    with pytest.raises(ConfigError, match="greater than 0"):
        v.real("x", 0, lo=0, open_lo=True)
    with pytest.raises(ConfigError, match="less than 1"):
        v.real("x", 1.0, hi=1, open_hi=True)
    for bad in (math.nan, math.inf, False, "0.5"):
        with pytest.raises(ConfigError, match="a finite number"):
            v.real("x", bad)


def test_fraction_auto_choice_flag_and_known_keys():
    assert v.fraction("k", 1) == 1.0
    with pytest.raises(ConfigError, match=r"\(0, 1\)"):
        v.fraction("k", 1, open_hi=True)
    assert v.auto_or_positive("tau", " AUTO ") == "auto"
    assert v.auto_or_positive("tau", 2) == 2.0
    with pytest.raises(ConfigError, match='"auto" or a finite number > 0'):
        v.auto_or_positive("tau", -1)
    assert v.choice("mode", "sync", ("sync", "async")) == "sync"
    with pytest.raises(ConfigError, match="mode: 'snyc' is invalid; one of sync, async"):
        v.choice("mode", "snyc", ("sync", "async"))
    with pytest.raises(ConfigError, match="true or false"):
        v.flag("collude", 1)
    v.known_keys("attack", {"lam": 1}, ("lam",), "attack 'boost'")
    with pytest.raises(ConfigError, match="attack.lamda: .* attack 'boost' takes lam"):
        v.known_keys("attack", {"lamda": 1}, ("lam",), "attack 'boost'")
