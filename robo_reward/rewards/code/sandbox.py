"""Run untrusted reward code: a validated subset of Python in a limited worker process.

Threat model
------------

The code comes from an LLM (or from a reward-library file that someone could have
edited) and is treated as hostile: it may try to read or write files, open sockets,
start processes, import modules, climb out through object introspection
(``().__class__.__bases__[0].__subclasses__()``, ``gen.gi_frame.f_globals``,
``"{0.__class__}".format(x)``), hang the trainer, exhaust its memory, flood it with
output, or return garbage. Defences, outermost first:

1. **Static validation** (:mod:`~robo_reward.rewards.code.validate`): only a subset
   of Python is accepted; no imports (``numpy``/``math`` imports bind restricted
   namespaces), no names or attributes starting with ``_``, attribute access only
   from allowlists, no ``getattr``/``eval``/``exec``/``open``/``type``/``globals``...
   Every rejection names the line. The code is parsed and compiled in the trainer but
   never executed there.
2. **Restricted namespace**: the code runs with a builtins dict of a few numeric
   builtins, and ``np``/``math`` are namespaces holding only the allowlisted
   functions (no ``np.load``, ``np.lib``, ``np.ctypeslib``, ``np.random``...). Inputs
   are read-only arrays.
3. **A separate worker process** (``isolation="process"``, the default), started
   with ``python -I`` (no user site, no ``PYTHON*`` variables), an environment with
   nothing but thread settings (no API keys), working directory ``/``, its own
   session (Ctrl-C in the trainer does not reach it), stdin/stdout/stderr on
   ``/dev/null``, and:

   * ``RLIMIT_AS`` = its size after start-up + ``memory_mb`` (memory bombs end in
     ``MemoryError``; Linux), ``RLIMIT_FSIZE`` = 0 (no file can be written),
     ``RLIMIT_CORE`` = 0, ``RLIMIT_NPROC`` = 0 (no new processes, for non-root users);
   * a CPython **audit hook** that refuses ``open``, ``os.*``, ``socket.*``,
     ``subprocess.*``, ``ctypes.*``, ``import``, ``compile``/``exec`` of any code but
     the reward module, ``marshal``, frame/code introspection (``object.__getattr__``
     on restricted attributes), ``gc`` walks, ``pickle`` and the like while the code
     runs;
   * the parent death signal (Linux): the worker dies with the trainer.

4. **The trainer never trusts the worker**: requests go out as raw array bytes and
   replies come back in a fixed binary layout (``float64`` arrays, bounded term names)
   or bounded JSON for errors. Nothing from the worker is unpickled, so even a worker
   taken over through an interpreter bug can only send wrong numbers.
5. **Per-call time limit** (``timeout_s``): the trainer waits on the reply pipe with a
   deadline; past it, the worker is asked where it is (``SIGUSR1``, to name the line),
   then killed with ``SIGKILL`` and replaced on the next call. This stops Python
   loops and native code alike (``10**10**10``, a huge ``np.ones``).
6. **Output checks**: the reward and each term must be ``float[n]`` (a plain number
   only when ``n == 1``), finite and within ``float32`` range; at most
   :data:`MAX_TERMS` terms with names of at most :data:`MAX_TERM_NAME` characters.
   A failure re-runs the call once under a line tracer to name the line where the
   first non-finite value appeared and the ``return`` line.

Not defended: bugs in CPython or numpy that let crafted inputs corrupt memory (the
worker then runs with the trainer's user rights: it could read what that user can
read; the static and namespace layers make reaching such bugs hard, and the audit hook
is bypassed by native code). There is no seccomp filter, no namespace/chroot jail and
no network isolation at the OS level. ``RLIMIT_AS`` does not work on macOS, and
``RLIMIT_NPROC`` does not bind root. CPU the worker uses within the time limit is
taken from the trainer's machine. Reward code can keep state across calls in
module-level lists or dicts (it cannot reach anything else). With
``isolation="none"`` layers 1, 2 and 6 apply but the code runs inside the trainer with
no time or memory limit: use it only for code you trust (benchmarks, hand-written
rewards).

Speed: one request and one reply per vector-env step, a few hundred bytes each way
over pipes. ``benchmarks/code_reward_overhead.py`` measures it against calling the
function directly.
"""

from __future__ import annotations

import inspect
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ...core.errors import ConfigError, RewardComputationError
from .validate import (
    ATTRIBUTE_NAMES,
    BUILTIN_NAMES,
    DEFAULT_FUNCTION,
    MATH_NAMES,
    NUMPY_LINALG_NAMES,
    NUMPY_NAMES,
    ValidatedCode,
    validate_reward_code,
)

#: Most named terms a reward may return.
MAX_TERMS = 64
#: Longest term name, in characters.
MAX_TERM_NAME = 100
#: Longest error message kept from the worker, in characters.
MAX_MESSAGE = 2000
_MAX_ERROR_BYTES = 64 * 1024
_HEADER = struct.Struct("<cI")
_DTYPE_CODES = {0: np.dtype("<f8"), 1: np.dtype("bool")}


# ----------------------------------------------------------------------------- errors


class RewardCodeError(RewardComputationError):
    """Reward code failed when it ran: it raised, returned bad values, hung, or ran out of memory.

    Attributes:
        kind: ``"exception"``, ``"output"``, ``"timeout"``, ``"memory"``, ``"recursion"``,
            ``"load"`` or ``"crash"``.
        line: the line of the reward code concerned (1-based), when known.
        source_line: that line's text.
        filename: the code's file name (``"<reward>"`` for code given as a string).
        details: everything the sandbox learned, as a dict (for critics and logs).
    """

    kind = "exception"

    def __init__(self, message: str, *, line: int | None = None, source_line: str = "",
                 filename: str = "<reward>", details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.line = line
        self.source_line = source_line
        self.filename = filename
        self.details = dict(details or {})


class RewardCodeOutputError(RewardCodeError):
    """The reward or a term has the wrong type or shape, or is NaN/inf/outside float32 range."""

    kind = "output"


class RewardCodeTimeout(RewardCodeError):
    """A call ran past the per-call time limit; the worker was killed (and is replaced on the next call)."""

    kind = "timeout"


class RewardCodeMemoryError(RewardCodeError):
    """The code ran out of its memory allowance."""

    kind = "memory"


class RewardCodeCrash(RewardCodeError):
    """The worker process died or broke the reply protocol."""

    kind = "crash"


_ERROR_TYPES: dict[str, type[RewardCodeError]] = {
    "exception": RewardCodeError,
    "recursion": RewardCodeError,
    "load": RewardCodeError,
    "output": RewardCodeOutputError,
    "timeout": RewardCodeTimeout,
    "memory": RewardCodeMemoryError,
    "crash": RewardCodeCrash,
}


@dataclass
class CodeResult:
    """What one call returned: the reward and the named terms, each ``float64[n]``.

    ``summed`` is true when the code returned a dict and the reward is the sum of its terms.
    The arrays are read-only views of one ``block`` (``[1 + len(terms), n]``), fresh for
    every call: keep them, copy them to change them.
    """

    reward: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)
    summed: bool = False
    block: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_block(cls, block: np.ndarray, names: list[str], summed: bool) -> "CodeResult":
        """Views on ``block`` (``[1 + len(names), n]``: the reward, then one row per term)."""
        return cls(block[0], {k: block[i] for i, k in enumerate(names, 1)}, summed, block)

    def astype(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The reward and terms converted to ``dtype`` in one pass: ``(reward, terms)``."""
        if self.block is None:
            return self.reward.astype(dtype), {k: v.astype(dtype) for k, v in self.terms.items()}
        conv = self.block.astype(dtype)
        return conv[0], {k: conv[i] for i, k in enumerate(self.terms, 1)}


# ------------------------------------------------------------------ worker-side functions
#
# Everything named ``_w_*`` runs inside the worker process (its source is sent to
# ``python -I -c``), and also in the trainer for ``isolation="none"``. These functions
# may use only the standard library, numpy and each other: no module globals.


def _w_namespace(spec):
    """Build the restricted globals (builtins, ``np``, ``math`` and imported names) for reward code."""
    import builtins
    import math
    import types

    import numpy as np

    def _print(*args, **kwargs):
        return None

    npns = types.SimpleNamespace(**{k: getattr(np, k) for k in spec["numpy"] if hasattr(np, k)})
    npns.linalg = types.SimpleNamespace(**{k: getattr(np.linalg, k) for k in spec["linalg"] if hasattr(np.linalg, k)})
    mathns = types.SimpleNamespace(**{k: getattr(math, k) for k in spec["math"] if hasattr(math, k)})
    real_import = builtins.__import__

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        # numpy's C code imports its own helpers through the *calling* frame's builtins;
        # reward code itself cannot name __import__ (the validator refuses '_' names).
        if level == 0 and (name == "numpy" or name.startswith("numpy.")):
            return real_import(name, globals, locals, fromlist, level)
        raise ImportError(f"reward code may not import {name!r}")

    safe = {k: getattr(builtins, k) for k in spec["builtins"] if hasattr(builtins, k)}
    safe["print"] = _print
    safe["__import__"] = _import
    modules = {"numpy": npns, "math": mathns, "numpy.linalg": npns.linalg}
    g = {"__builtins__": safe, "np": npns, "numpy": npns, "math": mathns}
    for name, what in spec["bindings"].items():
        if what in modules:
            g[name] = modules[what]
        else:
            mod, _, attr = what.partition(":")
            g[name] = getattr(modules[mod], attr)
    return g


def _w_load(S, code):
    """Execute the module code in a fresh restricted namespace and bind the reward function."""
    import functools

    g = _w_namespace(S["spec"])
    S["globals"] = g
    exec(code, g)
    fn = g.get(S["function"])
    if not callable(fn):
        raise NameError(f"the code does not define a function {S['function']!r}")
    S["fn"] = functools.partial(fn, **S["params"]) if S["params"] else fn


def _w_line_of(S, tb):
    """Innermost line of the reward code in a traceback (or None)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == S["filename"]:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _w_exception_info(S, exc):
    """Describe an exception raised by reward code as a small dict."""
    trusted = S.get("trusted")
    S["trusted"] = True
    try:
        line = _w_line_of(S, exc.__traceback__)
        if isinstance(exc, MemoryError):
            return {"kind": "memory", "error": "MemoryError", "line": line}
        if isinstance(exc, RecursionError):
            return {"kind": "recursion", "error": "RecursionError: maximum recursion depth exceeded", "line": line}
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001 - a message that cannot be shown
            text = "(message could not be shown)"
        msg = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return {"kind": "exception", "error": msg[:2000], "line": line}
    finally:
        S["trusted"] = trusted


def _w_nonfinite(v):
    """True when ``v`` is a float, float array or container of them holding NaN or inf."""
    import math

    import numpy as np

    try:
        if isinstance(v, float):
            return not math.isfinite(v)
        if isinstance(v, np.ndarray):
            return v.dtype.kind in "fc" and not bool(np.isfinite(v).all())
        if isinstance(v, np.floating):
            return not bool(np.isfinite(v))
        if isinstance(v, dict):
            return any(_w_nonfinite(x) for x in v.values())
        if isinstance(v, (tuple, list)) and len(v) <= 64:
            return any(_w_nonfinite(x) for x in v)
    except Exception:  # noqa: BLE001
        return False
    return False


def _w_check(S, value, n):
    """Turn the return value into ``(block, names, summed)`` or an error dict.

    ``block`` is ``float64[1 + len(names), n]``: row 0 the reward, then one row per term.
    """
    import numpy as np

    f32max = 3.4028234663852886e38

    def problem_of(v, what):
        """Why ``v`` is not a finite float32-range ``float[n]`` (``None`` if it is)."""
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            return f"{what} is {type(v).__name__}, which cannot be converted to numbers ({str(exc)[:200]})"
        if arr.ndim == 0 and n == 1:
            arr = arr.reshape(1)
        if arr.shape != (n,):
            hint = ""
            if arr.ndim == 0:
                hint = "; it is a single number for the whole batch: compute one value per row"
            elif arr.shape == (n, 1):
                hint = "; drop the extra axis (e.g. x[:, 0], or keepdims=False)"
            elif arr.ndim >= 1 and arr.shape[0] == n:
                hint = "; reduce the other axes (e.g. .sum(axis=1))"
            return f"{what} has shape {tuple(arr.shape)}, expected ({n},): one value per row{hint}"
        finite = np.isfinite(arr)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            return f"{what} is not finite in rows {rows[:10].tolist()} (values {[float(x) for x in arr[rows[:10]]]})"
        big = np.abs(arr) > f32max
        if big.any():
            return f"{what} is too large for float32 in rows {np.flatnonzero(big)[:10].tolist()}"
        return None

    summed = False
    if value is None:
        return {"kind": "output", "problem": "the function returned None: return float[n], a dict of float[n], "
                                             "or (float[n], dict)"}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        reward_value, term_values = value
    elif isinstance(value, dict):
        reward_value, term_values, summed = None, value, True
    else:
        reward_value, term_values = value, {}
    count = len(term_values)
    if count > 64:
        return {"kind": "output", "problem": f"the function returned {count} terms; at most 64 are allowed"}
    if summed and not count:
        return {"kind": "output", "problem": "the function returned an empty dict"}
    block = np.empty((count + 1, n))
    names = []
    row = 0
    for key, v in term_values.items():
        row += 1
        if not isinstance(key, str) or not key or len(key) > 100:
            return {"kind": "output", "problem": "term names must be non-empty strings of at most 100 characters, "
                                                 f"got {str(key)[:40]!r}"}
        if isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype.kind in "fiub":
            block[row] = v
        else:
            problem = problem_of(v, f"term {key!r}")
            if problem:
                return {"kind": "output", "problem": problem, "term": key}
            block[row] = np.asarray(v, dtype=np.float64).reshape(n)
        names.append(key)
    if summed:
        total = block[0]
        total[:] = block[1]
        for i in range(2, count + 1):
            total += block[i]
    elif isinstance(reward_value, np.ndarray) and reward_value.shape == (n,) and reward_value.dtype.kind in "fiub":
        block[0] = reward_value
    else:
        problem = problem_of(reward_value, "the reward")
        if problem:
            return {"kind": "output", "problem": problem}
        block[0] = np.asarray(reward_value, dtype=np.float64).reshape(n)
    if block.max() <= f32max and block.min() >= -f32max:  # NaN fails both comparisons
        return block, names, summed
    for i, key in enumerate(names, 1):  # slow path: say which term
        problem = problem_of(block[i], f"term {key!r}")
        if problem:
            return {"kind": "output", "problem": problem, "term": key}
    what = "the sum of the terms" if summed else "the reward"
    return {"kind": "output", "problem": problem_of(block[0], what) or f"{what} is out of range"}


def _w_trace(S, arrays):
    """Re-run a call under a line tracer: where did the first non-finite value appear, which line returned."""
    import sys

    filename = S["filename"]
    found = {"origin_line": None, "origin_name": None, "return_line": None}
    last, known, top = {}, {}, []

    def local(frame, event, arg):
        trusted = S.get("trusted")
        S["trusted"] = True
        try:
            key = id(frame)
            if event in ("line", "return"):
                bad = {k for k, v in frame.f_locals.items() if _w_nonfinite(v)}
                if key not in known:
                    known[key] = bad  # the arguments, as they came in
                else:
                    new = bad - known[key]
                    if new and found["origin_line"] is None and key in last:
                        found["origin_line"], found["origin_name"] = last[key], sorted(new)[0]
                    known[key] |= bad
                last[key] = frame.f_lineno
            if event == "return":
                if found["origin_line"] is None and _w_nonfinite(arg):
                    found["origin_line"] = frame.f_lineno
                if top and frame is top[0]:
                    found["return_line"] = frame.f_lineno
        finally:
            S["trusted"] = trusted
        return local

    def start(frame, event, arg):
        trusted = S.get("trusted")
        S["trusted"] = True
        try:
            if frame.f_code.co_filename != filename:
                return None
            if not top:
                top.append(frame)
        finally:
            S["trusted"] = trusted
        return local(frame, event, arg)

    S["trusted"] = True
    previous = sys.gettrace()  # in-process, a debugger or coverage may be tracing: put it back after
    sys.settrace(start)
    S["trusted"] = False
    try:
        S["fn"](**arrays)
    except BaseException:  # noqa: BLE001 - only the location matters here
        pass
    finally:
        S["trusted"] = True
        sys.settrace(previous)
        S["trusted"] = False
    return found


def _w_evaluate(S, arrays, n):
    """One call: ``("ok", reward, terms, summed)`` or ``("error", info)``."""
    try:
        value = S["fn"](**arrays)
    except BaseException as exc:  # noqa: BLE001 - everything the code raises is reported
        info = _w_exception_info(S, exc)
        del exc
        return "error", info
    checked = _w_check(S, value, n)
    del value
    if isinstance(checked, tuple):
        return ("ok", *checked)
    info = checked
    info.update(_w_trace(S, arrays))
    info["bad_inputs"] = sorted(k for k, v in arrays.items() if _w_nonfinite(v))
    return "error", info


def _w_send(S, kind, payload):
    """Write one framed message to the trainer."""
    import os
    import struct

    data = struct.pack("<cI", kind, len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(S["fd_out"], view):]


def _w_recv(S):
    """Read one framed message from the trainer (``(None, b"")`` at end of file)."""
    import os
    import struct

    buf = S.get("pending", b"")
    while len(buf) < 5:
        chunk = os.read(S["fd_in"], 1 << 16)  # small enough to stay off mmap'ed allocations
        if not chunk:
            return None, b""
        buf += chunk
    kind, size = struct.unpack_from("<cI", buf, 0)
    while len(buf) < 5 + size:
        chunk = os.read(S["fd_in"], 5 + size - len(buf))
        if not chunk:
            return None, b""
        buf += chunk
    S["pending"] = buf[5 + size:]
    return kind, buf[5:5 + size]


def _w_decode(body, cache):
    """Decode a call request into ``n`` and a dict of read-only arrays (layouts cached by their bytes)."""
    import struct

    import numpy as np

    n, meta_len = struct.unpack_from("<IH", body, 0)
    meta = body[6:6 + meta_len]
    layout = cache.get(meta)
    if layout is None:
        dtypes = {0: np.dtype("<f8"), 1: np.dtype("bool")}
        layout, pos, offset = [], 0, 6 + meta_len
        (count,) = struct.unpack_from("<B", meta, pos)
        pos += 1
        for _ in range(count):
            (name_len,) = struct.unpack_from("<B", meta, pos)
            pos += 1
            name = meta[pos:pos + name_len].decode()
            pos += name_len
            code, ndim = struct.unpack_from("<BB", meta, pos)
            pos += 2
            shape = struct.unpack_from(f"<{ndim}I", meta, pos)
            pos += 4 * ndim
            items = 1
            for d in shape:
                items *= d
            layout.append((name, dtypes[code], items, offset, shape))
            offset += items * dtypes[code].itemsize
        if len(cache) > 64:
            cache.clear()
        cache[meta] = layout
    arrays = {}
    for name, dtype, items, offset, shape in layout:
        arrays[name] = np.frombuffer(body, dtype=dtype, count=items, offset=offset).reshape(shape)  # read-only
    return n, arrays


def _w_encode_result(block, names, summed):
    """Encode a result: ``<IBH`` (n, flags, count), the names (``<H`` length + UTF-8), then the float64 block."""
    import struct

    parts = [struct.pack("<IBH", block.shape[1], 1 if summed else 0, len(names))]
    for key in names:
        raw = key.encode()
        parts.append(struct.pack("<H", len(raw)))
        parts.append(raw)
    parts.append(block.tobytes())
    return b"".join(parts)


def _w_main():
    """Worker entry point: set up limits, load the code, answer calls until end of file."""
    import json
    import marshal
    import math  # noqa: F401 - imported before the audit hook refuses imports
    import os
    import signal
    import struct
    import sys
    import warnings

    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    S = {"fd_in": fd_in, "fd_out": fd_out, "trusted": True}

    kind, body = _w_recv(S)
    if kind != b"L":
        os._exit(2)
    head_len = struct.unpack_from("<I", body, 0)[0]
    init = json.loads(body[4:4 + head_len].decode())
    code_bytes = body[4 + head_len:]
    S.update(spec=init["spec"], function=init["function"], params=init["params"], filename=init["filename"])

    import numpy as np

    np.seterr(all="ignore")
    warnings.simplefilter("ignore")

    # Warm-up: numpy imports some helpers on first use; do it now, before imports are refused.
    sample = np.linspace(0.1, 0.9, 6).reshape(2, 3)
    ns = _w_namespace(S["spec"])
    for name in list(init["spec"]["numpy"]):
        f = getattr(ns["np"], name, None)
        if callable(f):
            for args in ((sample,), (sample, sample), (sample, 1)):
                try:
                    f(*args)
                except Exception:  # noqa: BLE001
                    pass
    for name in list(init["spec"]["linalg"]):
        try:
            getattr(ns["np"].linalg, name)(np.eye(3) + 0.1)
        except Exception:  # noqa: BLE001
            pass
    for _ in (np.add.reduce(sample), np.maximum.accumulate(sample), np.multiply.outer(sample[0], sample[0])):
        pass
    for name in init["methods"]:
        method = getattr(sample, name, None)
        if callable(method):
            for args in ((), (1,), (0, 1)):
                try:
                    method(*args)
                except Exception:  # noqa: BLE001
                    pass
    del ns, sample

    # Parent death signal (Linux): die with the trainer.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)
    except Exception:  # noqa: BLE001 - not Linux
        pass

    # Resource limits.
    try:
        import resource

        vm = 0
        try:
            with open("/proc/self/statm") as fh:
                vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except Exception:  # noqa: BLE001
            vm = 0
        if init["memory_mb"] and vm:
            limit = vm + int(init["memory_mb"]) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for res, value in (("RLIMIT_FSIZE", 0), ("RLIMIT_CORE", 0), ("RLIMIT_NPROC", 0)):
            if hasattr(resource, res):
                try:
                    resource.setrlimit(getattr(resource, res), (value, value))
                except (ValueError, OSError):
                    pass
    except ImportError:
        pass

    sys.setrecursionlimit(int(init["recursion_limit"]))
    code = marshal.loads(code_bytes)
    S["code"] = code

    denied = (
        "open", "os.", "subprocess.", "socket.", "shutil.", "ctypes.", "import", "compile", "exec",
        "marshal.", "code.__new__", "function.__new__", "sys.", "object.__", "pickle.", "urllib.",
        "http.", "ftplib.", "smtplib.", "imaplib.", "poplib.", "nntplib.", "telnetlib.", "webbrowser.",
        "builtins.input", "mmap.", "glob.", "resource.", "signal.", "gc.", "fcntl.", "pty.", "tempfile.",
        "sqlite3.", "cpython.", "syslog.", "shelve.", "dbm.", "ensurepip.", "winreg.", "msvcrt.", "_winapi.",
    )

    def audit(event, args):
        if S["trusted"]:
            return
        if event == "exec" and args and args[0] is code:
            return
        if event.startswith(denied):
            raise PermissionError(f"the sandbox does not allow '{event}'")

    def where(signum, frame):
        S["trusted"] = True
        line = None
        f = frame
        while f is not None:
            if f.f_code.co_filename == S["filename"]:
                line = f.f_lineno
                break
            f = f.f_back
        try:
            _w_send(S, b"E", json.dumps({"kind": "timeout", "line": line}).encode())
        finally:
            os._exit(0)

    signal.signal(signal.SIGUSR1, where)
    sys.addaudithook(audit)

    S["trusted"] = False
    try:
        _w_load(S, code)
    except BaseException as exc:  # noqa: BLE001
        info = _w_exception_info(S, exc)
        info["kind"] = "load" if info["kind"] == "exception" else info["kind"]
        S["trusted"] = True
        _w_send(S, b"E", json.dumps(info).encode())
        os._exit(0)
    S["trusted"] = True
    _w_send(S, b"K", b"{}")
    layouts = {}

    while True:
        kind, body = _w_recv(S)
        if kind is None:
            os._exit(0)
        n, arrays = _w_decode(body, layouts)
        S["trusted"] = False
        try:
            out = _w_evaluate(S, arrays, n)
        except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError while checking
            out = ("error", _w_exception_info(S, exc))
        S["trusted"] = True
        if out[0] == "ok":
            _w_send(S, b"R", _w_encode_result(out[1], out[2], out[3]))
        else:
            info = out[1]
            _w_send(S, b"E", json.dumps(info, default=str).encode()[:65536])
            if info.get("kind") in ("memory", "recursion"):
                os._exit(0)  # start clean next time
        del arrays, out, body


_WORKER_FUNCTIONS = (
    _w_namespace, _w_load, _w_line_of, _w_exception_info, _w_nonfinite, _w_check, _w_trace,
    _w_evaluate, _w_send, _w_recv, _w_decode, _w_encode_result, _w_main,
)
_BOOTSTRAP: str | None = None


def _bootstrap_source() -> str:
    global _BOOTSTRAP
    if _BOOTSTRAP is None:
        try:
            parts = [inspect.getsource(f) for f in _WORKER_FUNCTIONS]
        except OSError as exc:  # installed without sources
            raise ConfigError(
                f"the reward-code sandbox needs the source of {__name__} to start its worker: {exc}"
            ) from exc
        _BOOTSTRAP = "\n\n".join(parts) + "\n\n_w_main()\n"
    return _BOOTSTRAP


# --------------------------------------------------------------------------- the trainer side


def _spec(code: ValidatedCode) -> dict:
    return {
        "numpy": sorted(NUMPY_NAMES),
        "linalg": sorted(NUMPY_LINALG_NAMES),
        "math": sorted(MATH_NAMES),
        "builtins": sorted(BUILTIN_NAMES),
        "bindings": dict(code.bindings),
    }


def _kill(proc: subprocess.Popen | None) -> None:
    """Kill and reap a worker (used by finalizers; must not reference the sandbox)."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
    except Exception:  # noqa: BLE001 - best effort at shutdown
        pass
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe is not None:
                pipe.close()
        except Exception:  # noqa: BLE001
            pass


class _Timeout(Exception):
    pass


class Sandbox:
    """Runs one validated reward function, batched, behind the defences of the module docstring.

    Example::

        sb = Sandbox(source, timeout_s=0.5, memory_mb=256)
        out = sb(obs=obs, action=act, next_obs=next_obs)    # CodeResult: reward float64[n], terms
        sb.close()

    Args:
        code: the source, or an already validated :class:`ValidatedCode`.
        function: the reward function's name (for source code).
        params: overrides of the function's tunable constants (parameters with defaults).
        timeout_s: per-call time limit, seconds.
        load_timeout_s: time limit for starting the worker and running the module body.
        memory_mb: memory the code may use on top of the worker's start-up size (Linux).
        isolation: ``"process"`` (default) or ``"none"`` (in the calling process, no time
            or memory limit: only for trusted code).
        filename: name used in messages (a file path, or ``"<reward>"``).
        recursion_limit: Python recursion limit in the worker.

    Raises:
        CodeValidationError: the code is outside the allowed subset (nothing runs).
        ConfigError: unknown ``params`` or bad limits.
        RewardCodeError: the module body failed when loaded (e.g. a constant that raises).
    """

    def __init__(
        self,
        code: str | ValidatedCode,
        *,
        function: str = DEFAULT_FUNCTION,
        params: Mapping[str, Any] | None = None,
        timeout_s: float = 1.0,
        load_timeout_s: float = 10.0,
        memory_mb: int = 512,
        isolation: str = "process",
        filename: str = "<reward>",
        recursion_limit: int = 400,
    ):
        self.code = code if isinstance(code, ValidatedCode) else validate_reward_code(code, function, filename)
        if isolation not in ("process", "none"):
            raise ConfigError(f"isolation must be 'process' or 'none', got {isolation!r}")
        if not (timeout_s > 0 and load_timeout_s > 0):
            raise ConfigError("timeout_s and load_timeout_s must be positive")
        if memory_mb is not None and memory_mb < 16:
            raise ConfigError(f"memory_mb must be at least 16, got {memory_mb}")
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.code.params))
        if unknown:
            raise ConfigError(
                f"unknown reward-code parameter(s) {unknown}; {self.code.function} takes: "
                f"{', '.join(self.code.params) or '(no tunable parameters)'}"
            )
        try:
            json.dumps(params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"reward-code parameters must be plain numbers, strings or lists: {exc}") from exc
        self.params: dict[str, Any] = {**self.code.params, **params}
        self.timeout_s = float(timeout_s)
        self.load_timeout_s = float(load_timeout_s)
        self.memory_mb = int(memory_mb) if memory_mb else 0
        self.isolation = isolation
        self.recursion_limit = int(recursion_limit)
        self.restarts = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._pid = os.getpid()
        self._finalizer: weakref.finalize | None = None
        self._poll: Any = None
        self._state: dict | None = None
        self._layouts: dict[tuple, bytes] = {}
        self._names: dict[bytes, list[str]] = {}
        self.start()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs the function takes (from :data:`~robo_reward.rewards.code.validate.INPUT_NAMES`)."""
        return self.code.inputs

    @property
    def alive(self) -> bool:
        """Whether the worker (or the in-process function) is ready for calls."""
        if self.isolation == "none":
            return self._state is not None
        return self._proc is not None and self._proc.poll() is None and self._pid == os.getpid()

    def start(self) -> None:
        """Start the worker and load the code (done by the constructor and after a failure)."""
        if self.isolation == "none":
            S = {"spec": _spec(self.code), "function": self.code.function, "params": self.params,
                 "filename": self.code.filename, "trusted": True}
            try:
                _w_load(S, self.code.code)
            except BaseException as exc:  # noqa: BLE001
                info = _w_exception_info(S, exc)
                info["kind"] = "load" if info["kind"] == "exception" else info["kind"]
                raise self._error(info) from None
            self._state = S
            return
        self._stop()
        import marshal

        env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}
        numpy_root = os.path.dirname(os.path.dirname(np.__file__))
        boot = f"import sys\nsys.path.insert(0, {numpy_root!r})\n" + _bootstrap_source()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", boot],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, cwd=os.path.abspath(os.sep), close_fds=True, start_new_session=True,
            )
        except OSError as exc:
            raise RewardCodeCrash(f"could not start the reward-code worker process: {exc}") from exc
        self._proc = proc
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _kill, proc)
        self._poll = select.poll()
        self._poll.register(proc.stdout.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        head = json.dumps({
            "spec": _spec(self.code), "function": self.code.function, "params": self.params,
            "filename": self.code.filename, "memory_mb": self.memory_mb,
            "recursion_limit": self.recursion_limit, "methods": sorted(ATTRIBUTE_NAMES),
        }).encode()
        try:
            self._send(b"L", struct.pack("<I", len(head)) + head + marshal.dumps(self.code.code))
            kind, body = self._recv(time.monotonic() + self.load_timeout_s)
        except _Timeout:
            self._stop()
            raise RewardCodeTimeout(
                f"the reward-code worker did not start and load {self.code.filename} within "
                f"{self.load_timeout_s:g} s (the module body may loop forever, or the machine is overloaded)",
                filename=self.code.filename,
            ) from None
        except RewardCodeCrash:
            self._stop()
            raise
        if kind == b"E":
            self._stop()
            raise self._error(self._parse_error(body))
        if kind != b"K":
            self._stop()
            raise RewardCodeCrash(f"the reward-code worker sent {kind!r} instead of 'ready'", filename=self.code.filename)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None and self._pid == os.getpid():
            _kill(proc)

    def close(self) -> None:
        """Stop the worker. Calling again restarts it."""
        with self._lock:
            self._stop()
            self._state = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in ("_lock", "_proc", "_finalizer", "_poll", "_state"):
            state[k] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # -- pipes -----------------------------------------------------------------------------------
    def _send(self, kind: bytes, payload: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(_HEADER.pack(kind, len(payload)) + payload)
        try:
            while view:
                view = view[os.write(fd, view):]
        except (BrokenPipeError, OSError) as exc:
            raise RewardCodeCrash(
                f"the reward-code worker is gone ({self._exit_text()}): {exc}", filename=self.code.filename
            ) from None

    def _read_some(self, fd: int, deadline: float, want: int) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._poll.poll(max(1, int(remaining * 1000) + 1)):
            raise _Timeout()
        chunk = os.read(fd, max(want, 1 << 16))
        if not chunk:
            raise RewardCodeCrash(f"the reward-code worker died ({self._exit_text()})", filename=self.code.filename)
        return chunk

    def _recv(self, deadline: float, max_size: int | None = None) -> tuple[bytes, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf = self._read_some(fd, deadline, _HEADER.size)
        while len(buf) < _HEADER.size:
            buf += self._read_some(fd, deadline, _HEADER.size - len(buf))
        kind, size = _HEADER.unpack_from(buf, 0)
        limit = _MAX_ERROR_BYTES if kind in (b"E", b"K") else max_size
        if kind not in (b"E", b"K", b"R") or (limit is not None and size > limit):
            self._stop()
            raise RewardCodeCrash(
                f"the reward-code worker broke the reply protocol (message {kind!r} of {size} bytes); it was stopped",
                filename=self.code.filename,
            )
        end = _HEADER.size + size
        while len(buf) < end:
            buf += self._read_some(fd, deadline, end - len(buf))
        if len(buf) > end:
            self._stop()
            raise RewardCodeCrash("the reward-code worker sent more than one reply; it was stopped",
                                  filename=self.code.filename)
        return kind, buf[_HEADER.size:]

    def _exit_text(self) -> str:
        proc = self._proc
        if proc is None:
            return "stopped"
        try:
            rc = proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "still running"
        if rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exit status {rc}"

    # -- calls -----------------------------------------------------------------------------------
    def __call__(self, **arrays: np.ndarray) -> CodeResult:
        """Same as :meth:`call` with the inputs as keyword arguments."""
        return self.call(arrays)

    def _prepare(self, arrays: Mapping[str, Any]) -> tuple[int, dict[str, np.ndarray]]:
        missing = [k for k in self.code.inputs if arrays.get(k) is None]
        if missing:
            raise ConfigError(f"reward code {self.code.function} needs input(s) {missing}; given: {sorted(arrays)}")
        out: dict[str, np.ndarray] = {}
        n = None
        for k in self.code.inputs:
            x = arrays[k]
            if type(x) is not np.ndarray and isinstance(x, Mapping):
                raise ConfigError(f"reward code needs flat array inputs; {k!r} is a dict (Dict observation space)")
            dtype = np.bool_ if k in ("terminated", "truncated") else np.float64
            try:
                arr = np.ascontiguousarray(x, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"input {k!r} is not numeric: {exc}") from exc
            if arr.ndim == 0:
                raise ConfigError(f"input {k!r} must be batched: one row per transition")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ConfigError(f"inputs have different batch sizes: {k!r} has {arr.shape[0]} rows, expected {n}")
            out[k] = arr
        return (n or 0), out

    def call(self, arrays: Mapping[str, Any]) -> CodeResult:
        """Run the function on one batch.

        Args:
            arrays: the inputs by name (``obs``, ``action``, ``next_obs``, ...), each with a
                leading batch dimension ``n``; only those in :attr:`inputs` are used.

        Returns:
            :class:`CodeResult` with ``float64[n]`` reward and terms.

        Raises:
            RewardCodeError: (or a subclass) naming the code line: the code raised,
                returned bad values, ran past ``timeout_s`` or out of memory.
        """
        n, arrs = self._prepare(arrays)
        if n == 0:
            return CodeResult(np.zeros(0), {}, False)
        if self.isolation == "none":
            return self._call_inprocess(n, arrs)
        with self._lock:
            if not self.alive:
                self.restarts += 1
                self.start()
            self._send(b"C", self._encode(n, arrs))
            max_size = 7 + 8 * n + MAX_TERMS * (2 + 4 * MAX_TERM_NAME + 8 * n)
            try:
                kind, body = self._recv(time.monotonic() + self.timeout_s, max_size)
            except _Timeout:
                raise self._timeout() from None
            except RewardCodeCrash:
                self._stop()
                raise
            if kind == b"R":
                return self._parse_result(body, n)
            info = self._parse_error(body)
            if info.get("kind") in ("memory", "recursion"):
                self._stop()  # the worker exits after these; a fresh one starts on the next call
            raise self._error(info)

    def _encode(self, n: int, arrs: dict[str, np.ndarray]) -> bytes:
        key = tuple((name, arr.dtype.char, arr.shape) for name, arr in arrs.items())
        head = self._layouts.get(key)
        if head is None:
            meta = [struct.pack("<B", len(arrs))]
            for name, arr in arrs.items():
                raw = name.encode()
                meta.append(struct.pack(f"<B{len(raw)}sBB{arr.ndim}I", len(raw), raw,
                                        1 if arr.dtype == np.bool_ else 0, arr.ndim, *arr.shape))
            meta_bytes = b"".join(meta)
            head = struct.pack("<IH", n, len(meta_bytes)) + meta_bytes
            if len(self._layouts) > 64:
                self._layouts.clear()
            self._layouts[key] = head
        return b"".join([head, *(arr.tobytes() for arr in arrs.values())])

    def _call_inprocess(self, n: int, arrs: dict[str, np.ndarray]) -> CodeResult:
        if self._state is None:
            self.start()
        views = {}
        for k, a in arrs.items():
            v = a.view()  # never touch the caller's array flags
            v.flags.writeable = False
            views[k] = v
        with np.errstate(all="ignore"):  # NaN/inf are reported as errors, not warnings
            status, *rest = _w_evaluate(self._state, views, n)
        if status == "ok":
            block, names, summed = rest
            return CodeResult.from_block(block, names, summed)
        raise self._error(rest[0])

    def _timeout(self) -> RewardCodeTimeout:
        proc = self._proc
        info: dict[str, Any] = {"kind": "timeout", "line": None}
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGUSR1)
                kind, body = self._recv(time.monotonic() + 0.25)
                if kind == b"E":
                    info.update(self._parse_error(body))
            except (_Timeout, RewardCodeCrash, OSError):
                pass
        self._stop()
        info["kind"] = "timeout"
        return self._error(info)  # type: ignore[return-value]

    def _parse_result(self, body: bytes, n: int) -> CodeResult:
        try:
            rows, flags, count = struct.unpack_from("<IBH", body, 0)
            if rows != n or count > MAX_TERMS:
                raise ValueError(f"reply for {rows} rows and {count} terms")
            data_len = 8 * n * (count + 1)
            names_raw = body[7:len(body) - data_len]
            cached = self._names.get(names_raw)
            if cached is None:
                pos = 0
                names: list[str] = []
                for _ in range(count):
                    (name_len,) = struct.unpack_from("<H", names_raw, pos)
                    if name_len > 4 * MAX_TERM_NAME:
                        raise ValueError("term name too long")
                    names.append(names_raw[pos + 2:pos + 2 + name_len].decode("utf-8"))
                    pos += 2 + name_len
                if len(set(names)) != count or pos != len(names_raw):
                    raise ValueError("repeated or malformed term names")
                if len(self._names) > 64:
                    self._names.clear()
                self._names[names_raw] = names
            else:
                names = cached
            pos = 7 + len(names_raw)
            if len(body) - pos != 8 * n * (count + 1):
                raise ValueError("wrong data length")
            block = np.frombuffer(body, dtype="<f8", count=n * (count + 1), offset=pos).reshape(count + 1, n)
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            self._stop()
            raise RewardCodeCrash(
                f"the reward-code worker sent a malformed result ({exc}); it was stopped", filename=self.code.filename
            ) from None
        return CodeResult.from_block(block, names, bool(flags & 1))

    def _parse_error(self, body: bytes) -> dict[str, Any]:
        try:
            info = json.loads(body.decode("utf-8"))
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return {"kind": "crash", "error": "the worker sent an unreadable error report"}
        return info

    # -- messages --------------------------------------------------------------------------------
    def _where(self, line: Any) -> tuple[int | None, str, str]:
        lines = self.code.lines
        if isinstance(line, int) and 0 < line <= len(lines):
            text = lines[line - 1]
            return line, text, f"line {line} (`{text.strip()}`)"
        return None, "", ""

    def _error(self, info: Mapping[str, Any]) -> RewardCodeError:
        """Build the exception for a worker report, naming lines from the trainer's copy of the source."""
        kind = str(info.get("kind", "exception"))
        cls = _ERROR_TYPES.get(kind, RewardCodeError)
        fname = self.code.filename
        error = str(info.get("error", ""))[:MAX_MESSAGE]
        line, text, where = self._where(info.get("line"))
        origin_line = info.get("origin_line")
        if kind == "timeout":
            msg = (f"reward code in {fname} ran past the time limit of {self.timeout_s:g} s per call"
                   + (f"; it was at {where}" if where else " (it was inside native code, e.g. a huge number or array)")
                   + ". The call was stopped and the worker restarted; look for a loop that does not end")
        elif kind == "memory":
            msg = (f"reward code in {fname} ran out of memory (limit {self.memory_mb} MiB)"
                   + (f" at {where}" if where else "") + "; it must not build huge lists, strings or arrays")
        elif kind == "recursion":
            limit = f" (limit {self.recursion_limit} calls)" if self.isolation == "process" else ""
            msg = (f"reward code in {fname} recursed too deeply{limit}"
                   + (f" at {where}" if where else ""))
        elif kind == "load":
            msg = f"reward code in {fname} failed while loading" + (f" at {where}" if where else "") + f": {error}"
        elif kind == "output":
            problem = str(info.get("problem", "bad return value"))[:MAX_MESSAGE]
            ret_line, ret_text, ret_where = self._where(info.get("return_line"))
            msg = f"reward code {self.code.function} in {fname}: {problem}"
            if ret_where:
                msg += f"; returned at {ret_where}"
            bad_inputs = info.get("bad_inputs") or []
            o_line, o_text, o_where = self._where(origin_line)
            if bad_inputs:
                msg += f". The input(s) {list(bad_inputs)} already hold NaN/inf: the environment produced them"
            elif o_where:
                name = info.get("origin_name")
                msg += f". The first NaN/inf appeared at {o_where}" + (f" (in {name!r})" if name else "")
            line, text = (o_line, o_text) if o_line else (ret_line, ret_text)
        elif kind == "crash":
            msg = f"the reward-code worker for {fname} failed: {error or 'it stopped unexpectedly'}"
        else:
            msg = f"reward code in {fname} raised {error}" + (f" at {where}" if where else "")
        details = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        err = cls(msg, line=line, source_line=text, filename=fname, details=details)
        err.kind = kind
        return err

    def __repr__(self) -> str:
        return (f"Sandbox({self.code.filename}:{self.code.function}, inputs={list(self.inputs)}, "
                f"isolation={self.isolation!r}, timeout_s={self.timeout_s:g}, memory_mb={self.memory_mb})")


def run_reward_code(source: str | ValidatedCode, arrays: Mapping[str, Any], **sandbox_kwargs: Any) -> CodeResult:
    """Validate ``source``, run it once on ``arrays`` in a fresh :class:`Sandbox`, and stop the worker.

    For one-off checks (a critic's dry run); a trainer keeps one :class:`Sandbox` instead.
    """
    with Sandbox(source, **sandbox_kwargs) as sb:
        return sb.call(arrays)
