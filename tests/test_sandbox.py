"""Reward code: extraction, validation, the sandbox against hostile programs, and the ``code`` plugin."""

from __future__ import annotations

import os
import resource
import textwrap
import time

import gymnasium as gym
import numpy as np
import pytest

import robo_reward as rr
from robo_reward.core.errors import ConfigError, RewardComputationError
from robo_reward.rewards.builtin import PythonReward
from robo_reward.rewards.code import (
    CodeExtractionError,
    CodeValidationError,
    RewardCodeError,
    RewardCodeMemoryError,
    RewardCodeOutputError,
    RewardCodeTimeout,
    Sandbox,
    ValidatedCode,
    extract_code_blocks,
    extract_reward_code,
    run_reward_code,
    validate_reward_code,
)
from robo_reward.rewards.code.plugin import CodeReward

pytestmark = pytest.mark.timeout(120)

RNG = np.random.default_rng(0)
OBS = RNG.normal(size=(8, 10))
ACT = RNG.normal(size=(8, 2))
NEXT = RNG.normal(size=(8, 10))
INPUTS = {"obs": OBS, "action": ACT, "next_obs": NEXT}

REACHER = '''\
"""Reacher: fingertip to target, small control cost."""
import numpy as np

def compute_reward(obs, action, next_obs, ctrl_weight=0.1):
    dist = np.linalg.norm(next_obs[:, 8:10], axis=1)
    return {"distance": -dist, "control": -ctrl_weight * np.square(action).sum(axis=1)}
'''


def code(src: str) -> str:
    return textwrap.dedent(src).lstrip("\n")


def _direct(source: str, **params):
    """The same function, executed natively (real numpy, no validation, no sandbox)."""
    g: dict = {"np": np}
    exec(compile(source, "<direct>", "exec"), g)
    fn = g["compute_reward"]
    return lambda **kw: fn(**kw, **params)


# -------------------------------------------------------------------------------- extraction

FENCED = "Here you go:\n\n```python\nimport numpy as np\n\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 0]\n```\nDone."


@pytest.mark.parametrize(
    ("response", "expected_first_line"),
    [
        (FENCED, "import numpy as np"),
        ("```py\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 0]\n```", "def compute_reward"),
        ("```\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 0]\n```", "def compute_reward"),
        ("~~~python\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 0]\n~~~", "def compute_reward"),
        ("```Python3 title=reward.py\r\ndef compute_reward(obs, action, next_obs):\r\n    return obs[:, 0]\r\n```", "def compute_reward"),
        # truncated by the token limit: the fence never closes
        ("Sure.\n```python\nSCALE = 2\ndef compute_reward(obs, action, next_obs):\n    return SCALE * obs[:, 0]\n", "SCALE = 2"),
        # indented fence inside a list item
        ("1. Code:\n   ```python\n   def compute_reward(obs, action, next_obs):\n       return obs[:, 0]\n   ```", "def compute_reward"),
        # a reasoning model thinks aloud first, with a decoy
        ("<think>maybe ```python\ndef compute_reward(x): return 0\n```</think>\n```python\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 1]\n```",
         "def compute_reward(obs, action, next_obs):"),
        # no fences at all
        ("The reward is:\n\nimport numpy as np\n\ndef helper(x):\n    return x\n\ndef compute_reward(obs, action, next_obs):\n    return helper(obs)[:, 0]\n\nIt uses the first coordinate.",
         "import numpy as np"),
    ],
)
def test_extraction_from_varied_responses(response, expected_first_line):
    src = extract_reward_code(response)
    assert src.splitlines()[0].startswith(expected_first_line)
    assert "Done." not in src and "It uses" not in src and "think" not in src
    validate_reward_code(src)  # what was pulled out is complete code


def test_extraction_picks_the_last_block_defining_the_function():
    response = ("First try:\n```python\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 0]\n```\n"
                "Corrected:\n```python\ndef compute_reward(obs, action, next_obs):\n    return obs[:, 1]\n```\n"
                "Example use:\n```python\nr = compute_reward(o, a, n)\nprint(r)\n```\n"
                "Shell:\n```bash\npip install numpy\n```")
    assert "obs[:, 1]" in extract_reward_code(response)
    assert len(extract_code_blocks(response)) == 4


def test_extraction_errors_say_what_was_found():
    with pytest.raises(CodeExtractionError, match="functions defined: reward_fn"):
        extract_reward_code("```python\ndef reward_fn(obs):\n    return obs\n```")
    with pytest.raises(CodeExtractionError, match="no code block"):
        extract_reward_code("I cannot help with that.")
    with pytest.raises(CodeExtractionError, match="empty"):
        extract_reward_code("  ")
    assert "def my_reward" in extract_reward_code("```\ndef my_reward(obs):\n    return obs\n```", function="my_reward")


# -------------------------------------------------------------------------------- validation


def test_valid_code_signature_params_and_bindings():
    v = validate_reward_code(code('''
        from typing import Dict
        import numpy as npy
        from math import pi
        SCALE: float = 0.5

        def helper(x: "np.ndarray") -> float:
            return npy.linalg.norm(x, axis=1)

        def compute_reward(next_obs, terminated, *, bonus: float = 1.0, axes=(8, 10)) -> Dict[str, "np.ndarray"]:
            """Docstring."""
            d = helper(next_obs[:, axes[0]:axes[1]])
            out = {"dist": -d * SCALE * pi}
            out["done"] = bonus * terminated
            return out
    '''))
    assert v.inputs == ("next_obs", "terminated")
    assert v.params == {"bonus": 1.0, "axes": (8, 10)}
    assert v.bindings == {"npy": "numpy", "pi": "math:pi"}


HOSTILE_STATIC = [
    # (what it tries, source, line the rejection must name, text in the message)
    ("file read", "def compute_reward(obs):\n    data = open('/etc/passwd').read()\n    return obs[:, 0]", 2, "'open' is not available"),
    ("import os", "import os\ndef compute_reward(obs):\n    return obs[:, 0]", 1, "import of 'os'"),
    ("from-import", "from os import system\ndef compute_reward(obs):\n    return obs[:, 0]", 1, "not allowed"),
    ("import in function", "def compute_reward(obs):\n    import subprocess\n    return obs[:, 0]", 2, "imports are not allowed inside"),
    ("__import__", "def compute_reward(obs):\n    m = __import__('os')\n    return obs[:, 0]", 2, "'__import__' is not allowed"),
    ("subclasses walk", "def compute_reward(obs):\n    k = [c for c in ().__class__.__bases__[0].__subclasses__()]\n    return obs[:, 0]", 2, "__subclasses__"),
    ("class bases", "def compute_reward(obs):\n    b = obs.__class__.__base__\n    return obs[:, 0]", 2, "__base__"),
    ("format attribute lookup", "def compute_reward(obs):\n    s = '{0.__class__.__init__.__globals__}'.format(obs)\n    return obs[:, 0]", 2, "attribute .format"),
    ("format_map", "def compute_reward(obs):\n    s = '{x}'.format_map({'x': 1})\n    return obs[:, 0]", 2, "attribute .format_map"),
    ("f-string dunder", "def compute_reward(obs):\n    s = f'{obs.__class__}'\n    return obs[:, 0]", 2, "__class__"),
    ("generator frame", "def compute_reward(obs):\n    g = (x for x in obs)\n    f = g.gi_frame.f_globals\n    return obs[:, 0]", 3, "attribute .gi_frame"),
    ("function globals", "def compute_reward(obs):\n    return compute_reward.__globals__", 2, "__globals__"),
    ("getattr", "def compute_reward(obs):\n    c = getattr(obs, '__class__')\n    return obs[:, 0]", 2, "'getattr' is not available"),
    ("eval", "def compute_reward(obs):\n    return eval('obs[:, 0]')", 2, "'eval' is not available"),
    ("exec", "def compute_reward(obs):\n    exec('import os')\n    return obs[:, 0]", 2, "'exec' is not available"),
    ("compile", "def compute_reward(obs):\n    c = compile('1', 'x', 'eval')\n    return obs[:, 0]", 2, "'compile' is not available"),
    ("globals", "def compute_reward(obs):\n    g = globals()\n    return obs[:, 0]", 2, "'globals' is not available"),
    ("vars", "def compute_reward(obs):\n    v = vars(obs)\n    return obs[:, 0]", 2, "'vars' is not available"),
    ("type", "def compute_reward(obs):\n    t = type(obs)\n    return obs[:, 0]", 2, "'type' is not available"),
    ("builtins dict", "def compute_reward(obs):\n    b = __builtins__\n    return obs[:, 0]", 2, "__builtins__"),
    ("np.load", "def compute_reward(obs):\n    x = np.load('/tmp/x.npy')\n    return obs[:, 0]", 2, "np.load is not in the allowed"),
    ("np.save", "def compute_reward(obs):\n    np.save('/tmp/x.npy', obs)\n    return obs[:, 0]", 2, "np.save"),
    ("ndarray.tofile", "def compute_reward(obs):\n    obs.tofile('/tmp/x')\n    return obs[:, 0]", 2, "attribute .tofile"),
    ("ctypes via numpy", "def compute_reward(obs):\n    p = obs.ctypes.data\n    return obs[:, 0]", 2, "attribute .ctypes"),
    ("np.lib", "def compute_reward(obs):\n    s = np.lib.stride_tricks\n    return obs[:, 0]", 2, "np.lib"),
    ("np.random", "def compute_reward(obs):\n    return np.random.rand(len(obs))", 2, "np.random is not allowed"),
    ("while True", "def compute_reward(obs):\n    while True:\n        pass\n    return obs[:, 0]", 2, "never ends"),
    ("class", "class X:\n    pass\ndef compute_reward(obs):\n    return obs[:, 0]", 1, "classes are not allowed"),
    ("try/except", "def compute_reward(obs):\n    try:\n        x = 1\n    except Exception:\n        x = 2\n    return obs[:, 0]", 2, "try/except"),
    ("with", "def compute_reward(obs):\n    with obs:\n        pass\n    return obs[:, 0]", 2, "'with'"),
    ("decorator", "@staticmethod\ndef compute_reward(obs):\n    return obs[:, 0]", 1, "decorators"),
    ("module-level call", "x = [1]\nx.append(2)\ndef compute_reward(obs):\n    return obs[:, 0]", 2, "only definitions"),
    ("set attribute", "def compute_reward(obs):\n    obs.shape = (1,)\n    return obs[:, 0]", 2, "assigning to attributes"),
    ("private name", "def compute_reward(obs):\n    _x = 1\n    return obs[:, 0]", 2, "may not start with '_'"),
    ("yield", "def compute_reward(obs):\n    yield obs", 2, "generators"),
    ("global", "def compute_reward(obs):\n    global np\n    return obs[:, 0]", 2, "'global'"),
    ("kwargs", "def compute_reward(obs, **kw):\n    return obs[:, 0]", 1, "**kwargs"),
    ("unknown input", "def compute_reward(observation):\n    return observation[:, 0]", 1, "not an input the sandbox provides"),
    ("non-literal default", "def compute_reward(obs, w=len('ab')):\n    return obs[:, 0]", 1, "must be a literal"),
    ("syntax error", "def compute_reward(obs):\n    return obs[:, 0\n", 2, "syntax error"),
]


@pytest.mark.parametrize(("what", "source", "line", "message"), HOSTILE_STATIC, ids=[h[0] for h in HOSTILE_STATIC])
def test_validator_rejects_hostile_programs_naming_the_line(what, source, line, message):
    with pytest.raises(CodeValidationError) as info:
        validate_reward_code(source)
    err = info.value
    assert any(issue.line == line and message in issue.message for issue in err.issues), str(err)
    assert f"line {line}" in str(err)
    with pytest.raises(CodeValidationError):  # nothing runs: the sandbox validates first
        Sandbox(source)


def test_validator_lists_every_problem_and_missing_function():
    with pytest.raises(CodeValidationError) as info:
        validate_reward_code("import os\ndef reward(obs):\n    return open(obs)\n")
    msgs = " | ".join(str(i) for i in info.value.issues)
    assert "import of 'os'" in msgs and "'open' is not available" in msgs and "no function named 'compute_reward'" in msgs
    with pytest.raises(CodeValidationError, match="characters long"):
        validate_reward_code("#" * 200_000)


# ------------------------------------------------------------------ sandbox: normal operation


def test_sandbox_matches_the_function_called_directly():
    with Sandbox(REACHER) as sb, Sandbox(REACHER, isolation="none") as inproc:
        out = sb.call(INPUTS)
        out2 = inproc.call(INPUTS)
    terms = _direct(REACHER)(**INPUTS)
    assert out.summed and set(out.terms) == {"distance", "control"}
    for k in terms:
        assert np.array_equal(out.terms[k], terms[k]) and np.array_equal(out2.terms[k], terms[k])
    assert np.array_equal(out.reward, terms["distance"] + terms["control"])
    assert OBS.flags.writeable  # the caller's arrays are untouched


def test_return_forms_and_params():
    tup = code('''
        def compute_reward(obs, action, next_obs, scale=1.0):
            r = scale * next_obs[:, 0]
            return r, {"x": next_obs[:, 0], "bonus": 0 * r + 1}
    ''')
    out = run_reward_code(tup, INPUTS, params={"scale": 2.0})
    assert not out.summed and np.array_equal(out.reward, 2.0 * NEXT[:, 0]) and set(out.terms) == {"x", "bonus"}
    one = run_reward_code("def compute_reward(obs):\n    return 3.5\n", {"obs": OBS[:1]})
    assert out.reward.dtype == np.float64 and np.array_equal(one.reward, [3.5])
    with pytest.raises(ConfigError, match="unknown reward-code parameter"):
        Sandbox(tup, params={"scael": 2.0})


def test_inputs_are_read_only_and_errors_name_the_line():
    src = "def compute_reward(obs):\n    x = obs\n    x[:, 0] = 1.0\n    return x[:, 0]\n"
    for iso in ("process", "none"):
        with pytest.raises(RewardCodeError, match="line 3") as info:
            run_reward_code(src, INPUTS, isolation=iso)
        assert "read-only" in str(info.value) and info.value.line == 3
    with pytest.raises(RewardCodeError, match=r"IndexError.*line 2 \(`return obs\[:, 99\]`\)"):
        run_reward_code("def compute_reward(obs):\n    return obs[:, 99]\n", INPUTS)


def test_module_level_failure_is_reported_at_load():
    with pytest.raises(RewardCodeError, match="failed while loading at line 1") as info:
        Sandbox("X = 1 / 0\ndef compute_reward(obs):\n    return obs[:, 0] * X\n")
    assert info.value.kind == "load"


# --------------------------------------------------------------- sandbox: NaN, inf and shapes


@pytest.mark.parametrize(
    ("source", "line", "pattern"),
    [
        ("def compute_reward(obs):\n    x = obs[:, 0] - 100.0\n    d = np.sqrt(x)\n    r = d + 1\n    return r\n",
         3, r"not finite.*returned at line 5.*first NaN/inf appeared at line 3 \(`    d = np.sqrt\(x\)`\)|first NaN/inf appeared at line 3"),
        ("def compute_reward(obs):\n    return {'a': obs[:, 0], 'b': obs[:, 1] / 0.0}\n", 2, r"term 'b' is not finite"),
        ("def compute_reward(obs):\n    big = np.exp(obs[:, 0] * 1e4)\n    return big - big\n", 2, r"not finite.*line 2"),
        ("def compute_reward(obs):\n    return obs[:, 0] * 1e300\n", 2, "too large for float32"),
        ("def compute_reward(obs):\n    d = obs[:, :2]\n    return d\n", 3, r"shape \(8, 2\), expected \(8,\)"),
        ("def compute_reward(obs):\n    return obs[:, :1]\n", 2, r"shape \(8, 1\).*drop the extra axis"),
        ("def compute_reward(obs):\n    return obs.sum()\n", 2, "single number for the whole batch"),
        ("def compute_reward(obs):\n    x = obs[:, 0]\n", 2, "returned None"),
        ("def compute_reward(obs):\n    return {'a': 'high'}\n", 2, "cannot be converted to numbers"),
    ],
)
def test_bad_values_are_errors_naming_the_line(source, line, pattern):
    for iso in ("process", "none"):
        with pytest.raises(RewardCodeOutputError, match=pattern) as info:
            run_reward_code(source, INPUTS, isolation=iso)
        err = info.value
        assert isinstance(err, RewardComputationError)
        assert err.line == line, str(err)
        assert err.source_line == source.splitlines()[line - 1]


def test_nan_inputs_are_blamed_on_the_environment():
    bad = OBS.copy()
    bad[3, 0] = np.nan
    with pytest.raises(RewardCodeOutputError, match=r"rows \[3\].*input\(s\) \['obs'\] already hold NaN"):
        run_reward_code("def compute_reward(obs):\n    return obs[:, 0]\n", {"obs": bad})


# -------------------------------------------------------------- sandbox: hostile at run time


def _parent_ok(rss_before: int) -> None:
    """The calling process is intact: alive, responsive, and its memory did not balloon."""
    assert np.add(1, 1) == 2
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"the test process grew by {grown_mb:.0f} MB"


HOSTILE_RUNTIME = [
    ("infinite loop", "def compute_reward(obs):\n    x = 0\n    while x >= 0:\n        x += 1\n    return obs[:, 0]\n",
     RewardCodeTimeout, 3, "time limit"),
    ("loop via recursion-free busy work", "def compute_reward(obs):\n    t = 0\n    for i in range(10**12):\n        t += i\n    return obs[:, 0]\n",
     RewardCodeTimeout, None, "time limit"),
    ("native hang: huge integer power", "def compute_reward(obs):\n    x = 10 ** 10 ** 9\n    return obs[:, 0]\n",
     RewardCodeTimeout, None, "time limit"),
    ("memory bomb: list", "def compute_reward(obs):\n    x = [0] * (10 ** 10)\n    return obs[:, 0]\n",
     RewardCodeMemoryError, 2, "out of memory"),
    ("memory bomb: string doubling", "def compute_reward(obs):\n    s = 'a'\n    for i in range(64):\n        s = s + s\n    return obs[:, 0]\n",
     RewardCodeMemoryError, 4, "out of memory"),
    ("memory bomb: numpy", "def compute_reward(obs):\n    x = np.ones((10 ** 5, 10 ** 5))\n    return obs[:, 0]\n",
     RewardCodeMemoryError, 2, "out of memory"),
    ("recursion bomb", "def f(x):\n    return f(x) + 1\ndef compute_reward(obs):\n    return f(obs)\n",
     RewardCodeError, 2, "recursed too deeply"),
    ("huge output array", "def compute_reward(obs):\n    return np.zeros(10 ** 7)\n",
     RewardCodeOutputError, 2, r"shape \(10000000,\), expected \(8,\)"),
    ("huge number of terms", "def compute_reward(obs):\n    return {str(i): obs[:, 0] for i in range(1000)}\n",
     RewardCodeOutputError, 2, "at most 64"),
    ("huge term name", "def compute_reward(obs):\n    return {'x' * 10 ** 6: obs[:, 0]}\n",
     RewardCodeOutputError, 2, "at most 100 characters"),
    ("huge message", "def compute_reward(obs):\n    assert False, 'x' * 10 ** 7\n    return obs[:, 0]\n",
     RewardCodeError, 2, "AssertionError"),
]


@pytest.mark.parametrize(("what", "source", "cls", "line", "pattern"), HOSTILE_RUNTIME, ids=[h[0] for h in HOSTILE_RUNTIME])
def test_sandbox_stops_hostile_programs_and_the_caller_survives(what, source, cls, line, pattern):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # hangs get a short limit; the others a long one, so a loaded machine cannot turn them into timeouts
    limit = 0.5 if cls is RewardCodeTimeout else 5.0
    sb = Sandbox(source, timeout_s=limit, memory_mb=256)
    t0 = time.monotonic()
    with pytest.raises(cls, match=pattern) as info:
        sb.call(INPUTS)
    assert time.monotonic() - t0 < limit + 5.0
    if line is not None:
        assert info.value.line == line, str(info.value)
    assert len(str(info.value)) < 5000
    _parent_ok(rss)
    sb.close()


def test_timed_out_sandbox_restarts_and_keeps_working():
    src = code('''
        def compute_reward(obs):
            n = 0
            while obs[0, 0] > 100 and n >= 0:
                n += 1
            return obs[:, 0]
    ''')
    sb = Sandbox(src, timeout_s=0.3)
    hang = OBS.copy()
    hang[0, 0] = 1000.0
    with pytest.raises(RewardCodeTimeout, match="line 3"):
        sb.call({"obs": hang})
    assert not sb.alive
    assert np.array_equal(sb.call({"obs": OBS}).reward, OBS[:, 0])  # a fresh worker
    assert sb.restarts == 1
    sb.close()


def _forged(source: str) -> ValidatedCode:
    """Code that skipped validation, to test the worker's own defences (namespace, audit hook, limits)."""
    return ValidatedCode(source=source, function="compute_reward", inputs=("obs",), params={}, bindings={},
                         code=compile(source, "<reward>", "exec"), filename="<reward>")


@pytest.mark.parametrize(
    ("what", "body", "blocked_by"),
    [
        ("open through FileIO", "np.ones.__globals__['sys'].modules['io'].FileIO('/etc/hostname').read()",
         "does not allow 'open'"),
        ("os.system through a __subclasses__ walk",
         "w = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
         "    w.__init__.__globals__['system']('echo escaped > /tmp/rr_escaped')", "does not allow 'os.system'"),
        ("os.system through a numpy function's globals",
         "np.ones.__globals__['sys'].modules['os'].system('echo escaped > /tmp/rr_escaped')", "does not allow 'os.system'"),
        ("file write through builtins.open", "np.ones.__globals__['builtins'].open('/tmp/rr_escaped', 'w').write('x')",
         "does not allow 'open'"),
        ("import through importlib", "np.ones.__globals__['sys'].modules['importlib'].import_module('socket')",
         "does not allow"),
        ("fork", "np.ones.__globals__['sys'].modules['os'].fork()", "does not allow 'os.fork'"),
        ("directory listing", "np.ones.__globals__['sys'].modules['os'].listdir('/')", "does not allow 'os.listdir'"),
        ("frame walk", "np.ones.__globals__['sys']._getframe(0).f_back", "does not allow 'sys._getframe'"),
        ("code object", "(lambda: 0).__code__", "does not allow 'object.__getattr__'"),
        ("import through the builtins dict", "__builtins__['__import__']('os')", "may not import 'os'"),
    ],
)
def test_worker_defences_hold_even_without_validation(what, body, blocked_by):
    src = f"def compute_reward(obs):\n    {body}\n    return obs[:, 0]\n"
    with pytest.raises(RewardCodeError, match=blocked_by):
        Sandbox(_forged(src), timeout_s=2.0).call({"obs": OBS})
    assert not os.path.exists("/tmp/rr_escaped")


def test_worker_gets_no_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    src = ("def compute_reward(obs):\n"
           "    w = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
           "    env = w.__init__.__globals__['environ']\n"
           "    return obs[:, 0] + len(env.get('OPENAI_API_KEY', ''))\n")
    out = Sandbox(_forged(src)).call({"obs": OBS})
    assert np.array_equal(out.reward, OBS[:, 0])  # the key is not there


# ------------------------------------------------------------------------------ the plugin


def _run_pair(plugin_a, plugin_b, steps: int = 60, seed: int = 0):
    envs = [rr.VectorRewardWrapper(gym.make_vec("Reacher-v5", num_envs=8), p) for p in (plugin_a, plugin_b)]
    for e in envs:
        e.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        act = rng.uniform(-1, 1, size=(8, 2)).astype(np.float32)
        (_, ra, *_, ia), (_, rb, *_, ib) = (e.step(act) for e in envs)
        yield ra, rb, ia, ib
    for e in envs:
        e.close()


def test_code_plugin_on_reacher_vector_env_matches_direct_call():
    fn = _direct(REACHER)

    def direct(batch):
        terms = fn(obs=np.asarray(batch.obs, np.float64), action=np.asarray(batch.action, np.float64),
                   next_obs=np.asarray(batch.next_obs, np.float64))
        # the code plugin's rule for dict returns: the reward is the float64 sum of the terms
        return rr.RewardOutput(sum(terms.values()).astype(np.float32), {k: v.astype(np.float32) for k, v in terms.items()})

    plugin = rr.make_reward({"name": "code", "code": REACHER})
    assert isinstance(plugin, CodeReward) and plugin.requires == {"obs", "action", "next_obs"}
    n_steps = computed = 0
    for ra, rb, ia, ib in _run_pair(plugin, PythonReward(direct), steps=60):  # 60 > 50: episodes end and reset
        assert np.array_equal(ra, rb)
        # on the step where all 8 sub-envs reset together (NEXT_STEP autoreset) no reward is computed
        assert set(ia["reward_terms"]) == set(ib["reward_terms"])
        for k in ia["reward_terms"]:
            assert np.array_equal(ia["reward_terms"][k], ib["reward_terms"][k])
        computed += bool(ia["reward_terms"])
        assert np.array_equal(ia["env_reward"], ib["env_reward"])
        n_steps += 1
    assert n_steps == 60 and computed >= 58
    plugin.close()


def test_code_plugin_from_file_and_version_folder(tmp_path):
    f = tmp_path / "my_reward.py"
    f.write_text(REACHER)
    version = tmp_path / "library" / "v001"
    version.mkdir(parents=True)
    (version / "reward.py").write_text("def compute_reward(next_obs, scale=1.0):\n    return -scale * next_obs[:, 8]\n")
    a = rr.make_reward(f"code:path={f}")
    b = rr.make_reward({"name": "code", "path": str(version), "params": {"scale": 2.0}})
    assert b.requires == {"next_obs"} and b.params == {"scale": 2.0}
    for ra, rb, ia, ib in _run_pair(a, b, steps=5):
        assert set(ia["reward_terms"]) == {"distance", "control"} and not ib["reward_terms"]
    batch_next = NEXT
    assert np.allclose(b.sandbox.call({"next_obs": batch_next}).reward, -2.0 * NEXT[:, 8])
    with pytest.raises(ConfigError, match="has no reward.py"):
        CodeReward(path=str(tmp_path / "library"))
    with pytest.raises(ConfigError, match="does not exist"):
        CodeReward(path=str(tmp_path / "nope.py"))
    with pytest.raises(ConfigError, match="exactly one of"):
        CodeReward()
    with pytest.raises(CodeValidationError, match=str(f)):
        f.write_text("import os\n" + REACHER)
        CodeReward(path=str(f))
    a.close()
    b.close()


def test_code_plugin_errors_reach_the_trainer_as_reward_errors():
    env = rr.VectorRewardWrapper(gym.make_vec("Reacher-v5", num_envs=2),
                                 {"name": "code", "code": "def compute_reward(obs):\n    return np.log(obs[:, 0] - 10)\n"})
    env.reset(seed=0)
    with pytest.raises(RewardComputationError, match="line 2"):
        env.step(np.zeros((2, 2), np.float32))
    env.close()
    assert "code" in rr.list_rewards()
