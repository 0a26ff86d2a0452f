"""Static validation of reward code against a documented subset of Python.

Reward code (LLM-written or not) must be a *pure numeric function of batched arrays*.
:func:`validate_reward_code` parses it, checks every node of the syntax tree against
the rules below and compiles what passes. Nothing runs here; running is the job of
:mod:`robo_reward.rewards.code.sandbox`, which adds OS-level limits on top of these
checks.

The reward function
-------------------

::

    def compute_reward(obs, action, next_obs, scale=0.1):
        dist = np.linalg.norm(next_obs[:, 8:10], axis=1)
        return {"distance": -dist, "control": -scale * np.square(action).sum(axis=1)}

* **Inputs** are batched ``float64`` arrays, one row per transition, read-only:
  ``obs`` ``[n, obs_dim]``, ``action`` ``[n, act_dim]``, ``next_obs`` ``[n, obs_dim]``,
  and, if asked for, ``terminated`` / ``truncated`` (``bool[n]``). The function's
  parameters without defaults must be a subset of these names (:data:`INPUT_NAMES`),
  in any order; the sandbox passes only those.
* **Tunable constants** are parameters with literal defaults (numbers, booleans,
  strings, tuples/lists of those). ``params=`` of the sandbox or the ``code`` plugin
  overrides them. ``*args`` and ``**kwargs`` are not allowed.
* **It returns** one of

  - ``float[n]`` (the reward),
  - a dict ``{term name: float[n]}`` (the reward is the sum of the terms), or
  - a pair ``(float[n], {term name: float[n]})`` (Eureka style: the reward and terms
    that are only logged).

  Each value must have exactly shape ``(n,)`` (a plain number is accepted only when
  ``n == 1``) and be finite; see :mod:`~robo_reward.rewards.code.sandbox`.

The subset
----------

Allowed at module level: a docstring, ``def`` statements (helpers are fine), constant
assignments (``SCALE = 0.5``), and the imports ``import numpy``, ``import numpy as
np``, ``import math``, ``from math import sqrt``, ``from numpy import ...`` for names
of the allowed subset. These imports never run: they bind the sandbox's restricted
``np`` / ``math`` namespaces (:data:`NUMPY_NAMES`, :data:`NUMPY_LINALG_NAMES`,
:data:`MATH_NAMES`); ``np`` and ``math`` are available even without them.
``from __future__ import ...`` and ``typing`` imports are accepted and ignored, and
type annotations are dropped before compiling. Every other import is rejected.

Inside functions: assignments (plain, augmented, annotated, tuple unpacking,
subscript targets), ``if``/``for``/``while``/``break``/``continue``/``pass``,
``return``, ``assert``, nested ``def`` and ``lambda``, comprehensions, and all
expressions *except* the ones listed below.

Rejected, with the line named:

* ``import`` of anything else, ``class``, ``try``, ``with``, ``raise``, ``global``,
  ``nonlocal``, ``del``, ``yield``, ``await``/``async``, ``match``, decorators;
* names that start with ``_``, and attributes that start with ``_`` (``__class__``,
  ``__subclasses__``, ``__globals__``, ``_private``...);
* attribute access outside allowlists: ``np.X`` / ``math.X`` must name a function or
  constant of the subset, and any other ``obj.X`` must be a numeric-array, dict or
  list method of :data:`ATTRIBUTE_NAMES` (``shape``, ``sum``, ``clip``, ``items`` ...).
  This closes the introspection routes to the interpreter (``gi_frame``,
  ``f_globals``, ``str.format`` field lookups, ``ndarray.tofile``, ``np.load``...);
* names that are neither defined by the code, nor inputs, nor in the restricted
  builtins (:data:`BUILTIN_NAMES`): ``open``, ``eval``, ``exec``, ``compile``,
  ``getattr``, ``setattr``, ``globals``, ``locals``, ``vars``, ``dir``, ``type``,
  ``object``, ``super``, ``__import__``, ``input``, ``print`` (accepted, does
  nothing), ``breakpoint``, ``memoryview``, ``bytes``... have no binding;
* ``np.random`` (rewards must be deterministic);
* ``while`` loops whose condition is a true constant (``while True:``) and whose body
  has no ``break`` — a sure hang. Other non-terminating loops are stopped by the
  sandbox's time limit, which is the real defence;
* more than :data:`MAX_SOURCE_CHARS` characters or :data:`MAX_NODES` syntax nodes.

Every rejection is a :class:`CodeIssue` naming its line; :class:`CodeValidationError`
carries all of them, so a critic can feed every problem back to the designer at once.
"""

from __future__ import annotations

import ast
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ...core.errors import ConfigError

#: Parameter names the sandbox knows how to fill, and what each holds.
INPUT_NAMES: dict[str, str] = {
    "obs": "float64[n, obs_dim], the observation the action was taken in",
    "action": "float64[n, act_dim], the action",
    "next_obs": "float64[n, obs_dim], the observation after the step",
    "terminated": "bool[n], the step ended the episode in a terminal state",
    "truncated": "bool[n], the step hit the time limit",
}

#: The default name of the reward function.
DEFAULT_FUNCTION = "compute_reward"

#: Longest accepted source, in characters.
MAX_SOURCE_CHARS = 100_000

#: Most syntax-tree nodes accepted.
MAX_NODES = 20_000

#: ``np.<name>`` that reward code may use.
NUMPY_NAMES: frozenset[str] = frozenset(
    """
    abs absolute add all allclose amax amin any arange arccos arccosh arcsin arcsinh arctan arctan2
    arctanh argmax argmin argsort around array array_equal asarray atleast_1d atleast_2d average
    bool_ broadcast_to cbrt ceil clip column_stack concatenate copysign corrcoef cos cosh count_nonzero
    cross cumprod cumsum deg2rad degrees diag diff divide dot e einsum equal exp exp2 expand_dims
    expm1 eye finfo fix flip float32 float64 floor floor_divide fmax fmin fmod full full_like greater
    greater_equal heaviside hstack hypot identity inf inner int32 int64 interp isclose isfinite isinf
    isnan less less_equal linspace log log10 log1p log2 logaddexp logical_and logical_not logical_or
    logical_xor matmul max maximum mean median min minimum mod moveaxis multiply nan nan_to_num
    nanmax nanmean nanmin nansum ndim negative newaxis nonzero not_equal ones ones_like outer pi
    percentile positive power prod quantile rad2deg radians ravel reciprocal remainder repeat
    reshape rint roll round select shape sign signbit sin sinc sinh size sort split sqrt square
    squeeze stack std subtract sum swapaxes take take_along_axis tan tanh tensordot tile trace
    transpose tril triu true_divide trunc unique var vdot vstack where zeros zeros_like
    """.split()
)

#: ``np.linalg.<name>`` that reward code may use.
NUMPY_LINALG_NAMES: frozenset[str] = frozenset({"norm", "det", "inv", "pinv", "solve", "eigh", "eigvalsh"})

#: ``math.<name>`` that reward code may use.
MATH_NAMES: frozenset[str] = frozenset(
    """
    acos acosh asin asinh atan atan2 atanh ceil copysign cos cosh degrees e erf erfc exp expm1 fabs
    floor fmod hypot inf isclose isfinite isinf isnan log log10 log1p log2 nan pi pow radians sin
    sinh sqrt tan tanh tau trunc
    """.split()
)

#: Builtins available to reward code (nothing else is bound).
BUILTIN_NAMES: frozenset[str] = frozenset(
    """
    abs all any bool dict divmod enumerate filter float int isinstance len list map max min pow
    print range reversed round slice sorted str sum tuple zip
    True False None
    """.split()
)

#: Attributes allowed on values other than ``np`` / ``math``: numeric-array, dict and list methods.
ATTRIBUTE_NAMES: frozenset[str] = frozenset(
    """
    T all any argmax argmin argsort astype clip copy cumprod cumsum diagonal dot dtype eps flatten
    get imag item items keys max mean min ndim nonzero prod ravel real reshape round shape size
    sort squeeze std sum swapaxes take tolist trace transpose values var
    append extend
    reduce accumulate outer
    tiny resolution
    """.split()
)

#: Names that are refused with a specific message (they would reach the interpreter).
FORBIDDEN_NAMES: dict[str, str] = {
    name: "it gives access to the interpreter, files or processes"
    for name in (
        "open eval exec compile getattr setattr delattr hasattr globals locals vars dir type object super "
        "input breakpoint help memoryview bytes bytearray classmethod staticmethod property id hash "
        "iter next exit quit copyright credits license format repr ascii chr ord callable issubclass "
        "frozenset set complex bin hex oct"
    ).split()
}
FORBIDDEN_NAMES.update({"__import__": "imports are not allowed", "__builtins__": "it gives access to the interpreter"})

_IGNORED_IMPORTS = frozenset({"__future__", "typing", "typing_extensions"})


@dataclass(frozen=True)
class CodeIssue:
    """One rule the code breaks: where (1-based line, 0-based column), what, and the line's text."""

    line: int
    col: int
    message: str
    source_line: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "code"
        text = f" `{self.source_line.strip()}`" if self.source_line.strip() else ""
        return f"{where}:{text} {self.message}"


class CodeValidationError(ConfigError):
    """Reward code uses something outside the allowed subset, or is not valid Python.

    Attributes:
        issues: every problem found, each naming its line (:class:`CodeIssue`).
    """

    def __init__(self, issues: Iterable[CodeIssue], filename: str = "<reward>"):
        self.issues: list[CodeIssue] = list(issues)
        self.filename = filename
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(
            f"reward code in {filename} is not accepted ({len(self.issues)} problem"
            f"{'s' if len(self.issues) != 1 else ''}):\n{lines}\n"
            "Reward code may use only numpy/math on its array inputs; see robo_reward.rewards.code.validate."
        )

    @property
    def line(self) -> int | None:
        """Line of the first problem."""
        return self.issues[0].line if self.issues else None


@dataclass(frozen=True)
class ValidatedCode:
    """Reward code that passed validation, compiled and ready for the sandbox.

    Attributes:
        source: the code as given.
        function: the reward function's name.
        inputs: the input arrays the function takes (names from :data:`INPUT_NAMES`), in order.
        params: tunable constants (parameters with literal defaults) and their defaults.
        bindings: names the code imported, mapped to what they stand for
            (``"numpy"``, ``"math"``, ``"numpy.linalg"``, ``"numpy:sqrt"``, ``"math:pi"``).
        code: the compiled module (annotations and imports removed, line numbers kept).
        filename: the name used in messages and tracebacks.
    """

    source: str
    function: str
    inputs: tuple[str, ...]
    params: Mapping[str, Any]
    bindings: Mapping[str, str]
    code: types.CodeType = field(repr=False, compare=False)
    filename: str = "<reward>"

    @property
    def lines(self) -> list[str]:
        """The source split into lines (index ``line - 1``)."""
        return self.source.splitlines()

    def __reduce__(self):
        # code objects do not pickle: validate the source again on unpickling
        return (_revalidate, (self.source, self.function, self.filename))


def _revalidate(source: str, function: str, filename: str) -> "ValidatedCode":
    return validate_reward_code(source, function, filename)


class _Checker(ast.NodeVisitor):
    """Walks the tree and collects :class:`CodeIssue` s."""

    _ALLOWED_STMTS = (
        ast.FunctionDef, ast.Return, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.While,
        ast.If, ast.Expr, ast.Pass, ast.Break, ast.Continue, ast.Assert,
    )
    _STMT_NAMES = {
        ast.ClassDef: "classes are not allowed",
        ast.Try: "try/except is not allowed",
        ast.With: "'with' is not allowed",
        ast.AsyncWith: "async code is not allowed",
        ast.AsyncFor: "async code is not allowed",
        ast.AsyncFunctionDef: "async code is not allowed",
        ast.Raise: "'raise' is not allowed (return a value; use assert for checks)",
        ast.Global: "'global' is not allowed",
        ast.Nonlocal: "'nonlocal' is not allowed",
        ast.Delete: "'del' is not allowed",
    }

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.issues: list[CodeIssue] = []
        self.bindings: dict[str, str] = {}
        self.defined: set[str] = set()
        self.depth = 0  # function nesting

    # -- helpers ---------------------------------------------------------------------------------
    def add(self, node: ast.AST | None, message: str) -> None:
        line = getattr(node, "lineno", 0) or 0
        col = getattr(node, "col_offset", 0) or 0
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        self.issues.append(CodeIssue(line, col, message, text))

    def module_of(self, node: ast.AST) -> str | None:
        """``"numpy"``, ``"numpy.linalg"`` or ``"math"`` when ``node`` names one of those namespaces."""
        if isinstance(node, ast.Name):
            if node.id in ("np", "numpy") and node.id not in self.defined:
                return "numpy"
            if node.id == "math" and node.id not in self.defined:
                return "math"
            bound = self.bindings.get(node.id)
            if bound in ("numpy", "math", "numpy.linalg"):
                return bound
            return None
        if isinstance(node, ast.Attribute) and node.attr == "linalg" and self.module_of(node.value) == "numpy":
            return "numpy.linalg"
        return None

    # -- statements ------------------------------------------------------------------------------
    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt) and not isinstance(node, self._ALLOWED_STMTS) and not isinstance(
            node, (ast.Import, ast.ImportFrom)
        ):
            msg = self._STMT_NAMES.get(type(node), f"'{type(node).__name__}' statements are not allowed")
            self.add(node, msg)
            return
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            self.add(node, "generators ('yield') are not allowed")
            return
        if isinstance(node, ast.Await):
            self.add(node, "async code is not allowed")
            return
        super().generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        if self.depth:
            self.add(node, "imports are not allowed inside functions (numpy is available as np, math as math)")
            return
        for alias in node.names:
            if alias.name in _IGNORED_IMPORTS:
                continue
            if alias.name in ("numpy", "math"):
                self._bind(node, alias.asname or alias.name, alias.name)
            else:
                self.add(node, f"import of {alias.name!r} is not allowed: only numpy and math are available")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self.depth:
            self.add(node, "imports are not allowed inside functions (numpy is available as np, math as math)")
            return
        mod = node.module or ""
        if node.level or mod not in ("numpy", "math", "numpy.linalg") and mod not in _IGNORED_IMPORTS:
            self.add(node, f"import from {'.' * node.level}{mod!r} is not allowed: only numpy and math are available")
            return
        if mod in _IGNORED_IMPORTS:
            return
        allowed = {"numpy": NUMPY_NAMES | {"linalg"}, "math": MATH_NAMES, "numpy.linalg": NUMPY_LINALG_NAMES}[mod]
        for alias in node.names:
            if alias.name == "*":
                self.add(node, f"'from {mod} import *' is not allowed; import the names you use")
            elif alias.name not in allowed:
                self.add(node, f"{mod}.{alias.name} is not in the allowed subset")
            elif mod == "numpy" and alias.name == "linalg":
                self._bind(node, alias.asname or alias.name, "numpy.linalg")
            else:
                self._bind(node, alias.asname or alias.name, f"{mod}:{alias.name}")

    def _bind(self, node: ast.AST, name: str, what: str) -> None:
        if name.startswith("_"):
            self.add(node, f"name {name!r} is not allowed (names may not start with '_')")
            return
        self.bindings[name] = what

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.add(node.decorator_list[0], "decorators are not allowed")
        self._check_name(node, node.name, store=True)
        args = node.args
        if args.vararg is not None or args.kwarg is not None:
            self.add(node, "*args and **kwargs are not allowed")
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            self._check_name(a, a.arg, store=True)
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.visit(default)
        self.depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1

    def visit_Lambda(self, node: ast.Lambda) -> None:
        args = node.args
        if args.vararg is not None or args.kwarg is not None:
            self.add(node, "*args and **kwargs are not allowed")
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            self._check_name(a, a.arg, store=True)
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.visit(default)
        self.visit(node.body)

    def visit_While(self, node: ast.While) -> None:
        test = node.test
        always = isinstance(test, ast.Constant) and bool(test.value)
        if always and not any(isinstance(n, ast.Break) for stmt in node.body for n in _walk_loop_body(stmt)):
            self.add(node, "this 'while' loop never ends (its condition is always true and it has no 'break')")
        self.generic_visit(node)

    # -- expressions -----------------------------------------------------------------------------
    def _check_name(self, node: ast.AST, name: str, store: bool) -> None:
        if name.startswith("_"):
            self.add(node, f"name {name!r} is not allowed (names may not start with '_')")
        elif name in FORBIDDEN_NAMES and store:
            self.add(node, f"name {name!r} may not be redefined")

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("_"):
            why = FORBIDDEN_NAMES.get(name, "names may not start with '_'")
            self.add(node, f"{name!r} is not allowed ({why})")
            return
        if isinstance(node.ctx, ast.Store):
            self._check_name(node, name, store=True)
            return
        if name in FORBIDDEN_NAMES and name not in self.defined:
            self.add(node, f"{name!r} is not available in reward code ({FORBIDDEN_NAMES[name]})")
        elif (
            name not in self.defined
            and name not in BUILTIN_NAMES
            and name not in self.bindings
            and name not in ("np", "numpy", "math")
        ):
            self.add(node, f"name {name!r} is not defined (only numpy as np, math and the inputs are available)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("_"):
            self.add(node, f"attribute {attr!r} is not allowed (no access to attributes starting with '_')")
            return
        mod = self.module_of(node.value)
        value = node.value
        if isinstance(value, ast.Attribute) and value.attr == "random" and self.module_of(value.value) == "numpy":
            self.visit(value)  # reported once, as np.random
            return
        if mod == "numpy":
            if attr == "random":
                self.add(node, "np.random is not allowed: a reward must be a deterministic function of its inputs")
            elif attr not in NUMPY_NAMES and attr != "linalg":
                self.add(node, f"np.{attr} is not in the allowed numpy subset")
        elif mod == "numpy.linalg":
            if attr not in NUMPY_LINALG_NAMES:
                self.add(node, f"np.linalg.{attr} is not in the allowed subset ({', '.join(sorted(NUMPY_LINALG_NAMES))})")
        elif mod == "math":
            if attr not in MATH_NAMES:
                self.add(node, f"math.{attr} is not in the allowed math subset")
        elif attr not in ATTRIBUTE_NAMES:
            self.add(node, f"attribute .{attr} is not allowed (allowed: array/dict/list methods such as .shape, .sum, .clip, .items)")
        if mod is None:
            self.visit(node.value)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.add(node, "assigning to attributes is not allowed")

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        # the annotation is dropped before compiling, so only the target and value matter
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, bytes):
            self.add(node, "bytes literals are not allowed")


def _walk_loop_body(node: ast.AST):
    """Nodes of a loop body, not descending into nested loops or functions (their breaks are theirs)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.For, ast.While, ast.FunctionDef, ast.Lambda, ast.AsyncFor)):
            continue
        yield from _walk_loop_body(child)


class _StripAnnotations(ast.NodeTransformer):
    """Drop type annotations (they could name anything) and the imports (the sandbox binds them)."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno), node)

    def visit_Import(self, node: ast.Import) -> ast.AST:
        return ast.copy_location(ast.Pass(), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        return ast.copy_location(ast.Pass(), node)


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the code binds anywhere (functions, parameters, assignment and loop targets)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _literal(node: ast.AST) -> Any:
    value = ast.literal_eval(node)
    ok = (bool, int, float, str, type(None))

    def check(v: Any) -> bool:
        if isinstance(v, (tuple, list)):
            return all(check(x) for x in v)
        return isinstance(v, ok)

    if not check(value):
        raise ValueError("not a plain literal")
    return value


def validate_reward_code(
    source: str, function: str = DEFAULT_FUNCTION, filename: str = "<reward>"
) -> ValidatedCode:
    """Check ``source`` against the allowed subset and compile it.

    Args:
        source: Python source defining ``function`` (module docstring lists the rules).
        function: the name of the reward function.
        filename: shown in messages and tracebacks (a file path, or ``"<reward>"``).

    Returns:
        the :class:`ValidatedCode`, ready for :class:`~robo_reward.rewards.code.sandbox.Sandbox`.

    Raises:
        CodeValidationError: listing every problem found, each with its line.
    """
    if not isinstance(source, str):
        raise CodeValidationError([CodeIssue(0, 0, f"reward code must be a string, got {type(source).__name__}")], filename)
    if len(source) > MAX_SOURCE_CHARS:
        raise CodeValidationError(
            [CodeIssue(0, 0, f"the code is {len(source)} characters long; at most {MAX_SOURCE_CHARS} are accepted")],
            filename,
        )
    lines = source.splitlines()
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        line = exc.lineno or 0
        text = lines[line - 1] if 0 < line <= len(lines) else (exc.text or "")
        raise CodeValidationError([CodeIssue(line, (exc.offset or 1) - 1, f"syntax error: {exc.msg}", text)], filename) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise CodeValidationError([CodeIssue(0, 0, f"the code cannot be parsed: {type(exc).__name__}: {exc}")], filename) from None

    n_nodes = sum(1 for _ in ast.walk(tree))
    if n_nodes > MAX_NODES:
        raise CodeValidationError(
            [CodeIssue(0, 0, f"the code has {n_nodes} syntax nodes; at most {MAX_NODES} are accepted")], filename
        )

    checker = _Checker(lines)
    checker.defined = _bound_names(tree)

    # module level: docstring, imports, defs, constant assignments (imports first: they bind names)
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            checker.visit(stmt)
    fn_node: ast.FunctionDef | None = None
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # docstring or stray string
        if isinstance(stmt, ast.FunctionDef):
            if stmt.name == function:
                if fn_node is not None:
                    checker.add(stmt, f"{function!r} is defined twice")
                fn_node = stmt
            checker.visit(stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            checker.visit(stmt)
        elif isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
            checker.add(stmt, "remove the 'if __name__ == \"__main__\"' block: only definitions are allowed at module level")
        elif type(stmt) in _Checker._STMT_NAMES:
            checker.visit(stmt)  # the specific reason (class, try, ...)
        else:
            checker.add(stmt, "only definitions (def, constants, numpy/math imports) are allowed at module level")
    for name in sorted(checker.defined & set(checker.bindings)):
        checker.add(None, f"name {name!r} is both imported and assigned")

    inputs: list[str] = []
    params: dict[str, Any] = {}
    if fn_node is None:
        defined = sorted(s.name for s in tree.body if isinstance(s, ast.FunctionDef))
        checker.add(
            None,
            f"no function named {function!r} at module level"
            + (f" (defined: {', '.join(defined)})" if defined else "")
            + f"; define `def {function}(obs, action, next_obs):`",
        )
    else:
        args = fn_node.args
        positional = [*args.posonlyargs, *args.args]
        n_plain = len(positional) - len(args.defaults)
        for a in positional[:n_plain]:
            if a.arg in INPUT_NAMES:
                inputs.append(a.arg)
            else:
                checker.add(
                    a,
                    f"parameter {a.arg!r} of {function} is not an input the sandbox provides "
                    f"(inputs: {', '.join(INPUT_NAMES)}); give it a literal default to make it a tunable constant",
                )
        defaults = list(zip(positional[n_plain:], args.defaults)) + [
            (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults)
        ]
        for a, d in defaults:
            if d is None:
                checker.add(a, f"keyword-only parameter {a.arg!r} needs a literal default")
                continue
            if a.arg in INPUT_NAMES:
                checker.add(a, f"input {a.arg!r} may not have a default")
                continue
            try:
                params[a.arg] = _literal(d)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                checker.add(d, f"the default of {a.arg!r} must be a literal number, bool, string or tuple of those")
        if len(set(inputs)) != len(inputs):
            checker.add(fn_node, "an input is listed twice")

    if checker.issues:
        checker.issues.sort(key=lambda i: (i.line, i.col))
        raise CodeValidationError(checker.issues, filename)

    stripped = _StripAnnotations().visit(tree)
    ast.fix_missing_locations(stripped)
    try:
        code = compile(stripped, filename, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", 0) or 0
        raise CodeValidationError([CodeIssue(line, 0, f"the code does not compile: {exc}")], filename) from None
    return ValidatedCode(
        source=source,
        function=function,
        inputs=tuple(inputs),
        params=params,
        bindings=dict(checker.bindings),
        code=code,
        filename=filename,
    )
