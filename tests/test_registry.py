"""The reward registry, spec strings, entry points and the built-in plugins."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import robo_reward as rr
from robo_reward.core import registry
from robo_reward.core.errors import ConfigError, RewardComputationError, UnknownRewardError
from robo_reward.core.success import SuccessSignal
from robo_reward.core.types import TransitionBatch


def _batch(n=2, **kw):
    base = dict(
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        env_reward=np.arange(n, dtype=np.float32),
        env_ids=np.arange(n),
    )
    base.update(kw)
    return TransitionBatch(**base)


def test_parse_spec_types_and_commas():
    name, kw = registry.parse_spec("vlm-rm:prompt=a humanoid, kneeling,alpha=0.5,n=3,flag=true,xs=[1, 2]")
    assert name == "vlm-rm"
    assert kw == {"prompt": "a humanoid, kneeling", "alpha": 0.5, "n": 3, "flag": True, "xs": [1, 2]}
    assert registry.parse_spec("env") == ("env", {})


@pytest.mark.parametrize("spec,match", [("", "non-empty"), ("x:novalue", "bad argument"), ("x:a=1,a=2", "twice")])
def test_parse_spec_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        registry.parse_spec(spec)


def test_unknown_reward_lists_what_exists():
    with pytest.raises(UnknownRewardError) as exc:
        rr.make_reward("sparse-sucess")
    msg = str(exc.value)
    assert "Did you mean 'sparse-success'" in msg
    assert "constant" in msg and "python" in msg
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, rr.RoboRewardError)


def test_bad_argument_lists_accepted():
    with pytest.raises(ConfigError, match="accepts: value"):
        rr.make_reward("constant:valu=3")


def test_make_reward_forms_agree():
    batch = _batch(3)
    for spec in ("constant:value=2.5", {"name": "constant", "value": 2.5}):
        np.testing.assert_array_equal(rr.make_reward(spec).compute(batch).reward, [2.5] * 3)
    np.testing.assert_array_equal(rr.make_reward("constant", value=2.5)(batch).reward, [2.5] * 3)
    plugin = rr.make_reward("constant")
    assert rr.make_reward(plugin) is plugin
    with pytest.raises(ConfigError):
        rr.make_reward(plugin, value=1)
    with pytest.raises(ConfigError, match="'name'"):
        rr.make_reward({"value": 1})
    with pytest.raises(ConfigError):
        rr.make_reward(42)


def test_list_rewards_has_builtins():
    names = rr.list_rewards()
    for n in ("env", "sparse-success", "python", "constant"):
        assert n in names and names[n]


def test_register_reward_rejects_bad_names_and_duplicates():
    with pytest.raises(ConfigError, match="invalid reward name"):
        rr.register_reward("Bad Name", lambda: None)
    with pytest.raises(ConfigError, match="already registered"):
        rr.register_reward("env", lambda: None)


def test_entry_point_plugin_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "rr_thirdparty_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            '''
            import numpy as np
            from robo_reward import RewardPlugin, RewardOutput

            class Doubled(RewardPlugin):
                """Twice the env reward."""
                requires = frozenset({"env_reward"})
                def __init__(self, factor: float = 2.0):
                    self.factor = factor
                def compute(self, batch):
                    return RewardOutput(self.factor * batch.env_reward)
            '''
        )
    )
    dist = tmp_path / "rr_thirdparty_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rr-thirdparty-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[robo_reward.rewards]\ndoubled-demo = rr_thirdparty_demo:Doubled\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry.load_entry_points(force=True)
        assert "doubled-demo" in rr.list_rewards()
        assert registry.get_reward_entry("doubled-demo").origin.startswith("entry point")
        out = rr.make_reward("doubled-demo:factor=3")(_batch(2))
        np.testing.assert_array_equal(out.reward, [0.0, 3.0])
    finally:
        registry._REGISTRY.pop("doubled-demo", None)
        sys.modules.pop("rr_thirdparty_demo", None)


def test_env_reward_plugin_passes_env_reward():
    np.testing.assert_array_equal(rr.make_reward("env")(_batch(3)).reward, [0, 1, 2])


def test_sparse_success_from_info_key_and_threshold():
    infos = [{"success": 1.0, "d": 0.2}, {"success": 0.0, "d": 0.01}]
    out = rr.make_reward("sparse-success:key=success,value=5")(_batch(2, infos=infos, next_obs=np.zeros((2, 1))))
    np.testing.assert_array_equal(out.reward, [5, 0])
    np.testing.assert_array_equal(out.terms["success"], [1, 0])
    out = rr.make_reward("sparse-success:key=d,threshold=0.05,below=true")(_batch(2, infos=infos, next_obs=np.zeros((2, 1))))
    np.testing.assert_array_equal(out.reward, [0, 1])


def test_sparse_success_below_threshold_via_signal():
    sig = SuccessSignal(info_key="d", threshold=0.05, below=True)
    assert sig.evaluate(None, [{"d": 0.2}, {"d": 0.01}]).tolist() == [False, True]
    with pytest.raises(ConfigError, match="missing"):
        sig.evaluate(None, [{}])
    with pytest.raises(ConfigError, match="exactly one"):
        SuccessSignal()


def test_sparse_success_needs_a_signal():
    with pytest.raises(ConfigError, match="success signal"):
        rr.make_reward("sparse-success")


def batched_reward(batch):
    return {"dist": -np.abs(batch.next_obs[:, 0]), "bonus": np.ones(len(batch))}


def row_reward(obs, action, next_obs, info, scale=1.0):
    return scale * float(next_obs[0] - obs[0])


def test_python_reward_batched_and_per_row():
    b = _batch(2, obs=np.array([[1.0], [2.0]]), next_obs=np.array([[-3.0], [5.0]]), action=np.zeros((2, 1)), infos=[{}, {}])
    out = rr.make_reward("python:fn=tests.test_registry:batched_reward")(b)
    np.testing.assert_array_equal(out.reward, [-2.0, -4.0])
    np.testing.assert_array_equal(out.terms["dist"], [-3.0, -5.0])
    out = rr.make_reward({"name": "python", "fn": "tests.test_registry:row_reward", "batched": False, "kwargs": {"scale": 2}})(b)
    np.testing.assert_array_equal(out.reward, [-8.0, 6.0])


def test_python_reward_errors():
    with pytest.raises(ConfigError, match="package.module:name"):
        rr.make_reward("python:fn=nocolon")
    with pytest.raises(ConfigError, match="cannot import"):
        rr.make_reward("python:fn=no_such_module_xyz:f")
    with pytest.raises(ConfigError, match="no attribute"):
        rr.make_reward("python:fn=tests.test_registry:nope")

    def boom(batch):
        raise ZeroDivisionError("oops")

    with pytest.raises(RewardComputationError, match="ZeroDivisionError"):
        rr.make_reward("python", fn=boom)(_batch(1, obs=np.zeros((1, 1)), next_obs=np.zeros((1, 1))))
