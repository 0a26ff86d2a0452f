"""Robot interfaces: the :class:`Robot` protocol and its implementations.

The protocol is shaped like LeRobot's ``Robot`` class (``connect``,
``get_observation``, ``send_action``, ``disconnect``, ``is_connected``,
``observation_features``, ``action_features``), so an adapter to a LeRobot robot is a
few lines (:class:`LeRobotAdapter`). Observations and actions are mappings of named
features to arrays; the runtime flattens them into the policy's vectors with a
:class:`FeatureLayout`.

Implementations:

* :class:`GymRobot` — any Gymnasium env (or a task card's env) stands in for a robot, in
  the same process;
* :class:`NetworkRobot` — a client of the deploy wire protocol
  (:mod:`robo_reward.deploy.protocol`) talking to a controller process over TCP, e.g.
  the simulated robot server (:mod:`robo_reward.deploy.sim_server`);
* :class:`LeRobotAdapter` — wraps a LeRobot robot object.

:func:`open_robot` makes one from a URI: ``tcp://HOST:PORT``, ``sim:CARD`` or ``gym:ENV_ID``.

Observation metadata
--------------------
Besides its features, an observation mapping may carry reserved keys that start with
``_`` (:data:`META_KEYS`): ``_seq`` (sensor reading counter: a repeated value means a
stale reading), ``_stamp`` (robot clock, seconds), ``_step`` (actions applied),
``_done``/``_terminated``/``_truncated`` (end of an episode), ``_reward`` and
``_success`` (simulated robots). A robot without ``_seq`` is trusted to return a fresh
reading on every call.

Optional capabilities (looked up with ``getattr``): ``reset(seed=None) -> observation``
(episodic robots), a writable ``timeout`` attribute (seconds a call may block; the
runtime sets it from the control period), ``action_limits`` (``(low, high)`` arrays of
the flat action), ``safe_action`` and ``control_rate_hz``.
"""

from __future__ import annotations

import collections
import socket
import time
import urllib.parse
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..core.errors import ConfigError
from . import protocol as proto
from .errors import ProtocolError, RobotDisconnected, RobotError, RobotTimeout

#: Reserved observation keys (not features).
META_KEYS = ("_seq", "_stamp", "_step", "_done", "_terminated", "_truncated", "_reward", "_success")

#: Recorded actions kept by in-process robots and the simulated server (oldest dropped first).
HISTORY_LIMIT = 200_000


@runtime_checkable
class Robot(Protocol):
    """What the deploy runtime needs from a robot (LeRobot-shaped), usable as a context manager.

    ``with robot:`` connects on entry and disconnects on exit.
    """

    name: str

    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        """Feature name → shape of each observation feature, in flattening order."""
        ...

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        """Feature name → shape of each action feature, in flattening order."""
        ...

    @property
    def is_connected(self) -> bool:
        """Whether the robot is connected."""
        ...

    def connect(self) -> None:
        """Connect (open the port, start the simulator, handshake)."""
        ...

    def get_observation(self) -> dict[str, Any]:
        """The latest reading: feature arrays plus optional reserved ``_`` keys (see the module docstring)."""
        ...

    def send_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Apply an action (feature name → array); return the action actually sent."""
        ...

    def disconnect(self) -> None:
        """Disconnect and release resources (idempotent)."""
        ...

    def __enter__(self) -> "Robot":
        """Connect and return the robot."""
        ...

    def __exit__(self, *exc: Any) -> None:
        """Disconnect."""
        ...


class RobotBase:
    """Convenience base class: the context-manager methods and defaults of the optional capabilities."""

    name: str = "robot"
    #: Seconds a call may block (``None``: implementation default). The runtime sets it.
    timeout: float | None = None

    def __enter__(self) -> "RobotBase":
        """Connect (unless connected) and return ``self``."""
        if not self.is_connected:  # type: ignore[attr-defined]
            self.connect()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: Any) -> None:
        """Disconnect."""
        self.disconnect()  # type: ignore[attr-defined]

    @property
    def action_limits(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(low, high)`` of the flat action, when the robot knows them."""
        return None

    @property
    def safe_action(self) -> np.ndarray | None:
        """The robot's own safe flat action, when it declares one."""
        return None

    @property
    def control_rate_hz(self) -> float | None:
        """The rate the robot expects to be commanded at, when known."""
        return None


# ----------------------------------------------------------------------------- layouts


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


class FeatureLayout:
    """Maps named features to one flat float32 vector and back.

    Args:
        features: feature name → shape (``()`` for a scalar), in flattening order.
    """

    def __init__(self, features: Mapping[str, Sequence[int]]):
        if not features:
            raise ConfigError("a feature layout needs at least one feature")
        self.names = list(features)
        self.shapes = {k: tuple(int(d) for d in v) for k, v in features.items()}
        self.slices: dict[str, slice] = {}
        start = 0
        for k in self.names:
            n = _size(self.shapes[k])
            self.slices[k] = slice(start, start + n)
            start += n
        self.size = start

    def flatten(self, values: Mapping[str, Any], out: np.ndarray | None = None) -> np.ndarray:
        """Concatenate the features of ``values`` (extra keys are ignored).

        Raises:
            ProtocolError: a feature is missing or has the wrong number of entries.
        """
        vec = np.empty(self.size, dtype=np.float32) if out is None else out
        for k in self.names:
            try:
                v = values[k]
            except KeyError:
                raise ProtocolError(f"the observation has no feature {k!r} (has {sorted(map(str, values))})") from None
            a = np.asarray(v, dtype=np.float32).reshape(-1)
            sl = self.slices[k]
            if a.size != sl.stop - sl.start:
                raise ProtocolError(f"feature {k!r} has {a.size} entries, expected shape {self.shapes[k]}")
            vec[sl] = a
        return vec

    def split(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        """Split a flat vector into the features (copies, reshaped)."""
        v = np.asarray(vec)
        if v.shape != (self.size,):
            raise ConfigError(f"expected a flat vector of {self.size} entries, got shape {v.shape}")
        return {k: v[self.slices[k]].reshape(self.shapes[k]).copy() for k in self.names}


def observation_layout(
    robot_features: Mapping[str, Sequence[int]], obs_dim: int, fields: Sequence[Mapping[str, Any]] | None = None
) -> FeatureLayout:
    """The layout that turns a robot's observation features into the policy's flat observation.

    When the policy's metadata names its observation fields (from the task card) and the
    robot has features of those names and sizes, the fields' order (by ``start``) is
    used, whatever order the robot lists them in. Otherwise the robot's features are
    concatenated in its own order, which must add up to ``obs_dim``.

    Raises:
        ConfigError: the robot's features cannot make the policy's observation.
    """
    if fields:
        ordered = sorted(fields, key=lambda f: int(f["start"]))
        contiguous = ordered[0]["start"] == 0 and ordered[-1]["stop"] == obs_dim and all(
            a["stop"] == b["start"] for a, b in zip(ordered, ordered[1:])
        )
        if contiguous and all(
            f["name"] in robot_features and _size(robot_features[f["name"]]) == f["stop"] - f["start"] for f in ordered
        ):
            return FeatureLayout({f["name"]: tuple(robot_features[f["name"]]) for f in ordered})
    layout = FeatureLayout(robot_features)
    if layout.size != obs_dim:
        names = ", ".join(f"{k}{tuple(v)}" for k, v in robot_features.items())
        wanted = ", ".join(f"{f['name']}[{f['start']}:{f['stop']}]" for f in fields or [])
        raise ConfigError(
            f"the robot's observation features ({names}; {layout.size} values) do not make the policy's "
            f"{obs_dim}-dim observation" + (f" (the policy expects the fields {wanted})" if wanted else "")
        )
    return layout


def action_layout(robot_features: Mapping[str, Sequence[int]], action_dim: int) -> FeatureLayout:
    """The layout that splits the policy's flat action into the robot's action features.

    Raises:
        ConfigError: the robot's action features do not add up to ``action_dim``.
    """
    layout = FeatureLayout(robot_features)
    if layout.size != action_dim:
        raise ConfigError(
            f"the robot's action features ({', '.join(f'{k}{tuple(v)}' for k, v in robot_features.items())}; "
            f"{layout.size} values) do not match the policy's {action_dim}-dim action"
        )
    return layout


def card_observation_features(card: Any, obs_dim: int) -> dict[str, tuple[int, ...]]:
    """Observation features from a task card's fields when they tile ``[0, obs_dim)``, else ``{"state": (obs_dim,)}``."""
    fields = sorted(getattr(card, "observation", None) or [], key=lambda f: f.start)
    if fields and fields[0].start == 0 and fields[-1].stop == obs_dim and all(
        a.stop == b.start for a, b in zip(fields, fields[1:])
    ):
        return {f.name: (f.stop - f.start,) for f in fields}
    return {"state": (obs_dim,)}


# ----------------------------------------------------------------------------- in-process: Gymnasium


class GymRobot(RobotBase):
    """A Gymnasium env as a robot, in this process (lock-step: each action is one env step).

    Every :meth:`get_observation` is a new reading (``_seq`` increases). After an
    episode ends (``_done``), actions raise :class:`RobotError` until :meth:`reset`.

    Args:
        env: an env with a 1-D ``Box`` observation and action space.
        name: the robot's name (default: the env id).
        seed: seed of the first reset (later resets continue the env's RNG unless given one).
        observation_features: names for slices of the observation (default ``{"state": (D,)}``).
        owns_env: close the env on :meth:`disconnect`.
        control_rate_hz: the rate the env is meant to be stepped at (default ``1 / env.dt`` when known).

    Attributes:
        actions: every action received by :meth:`send_action` (flat float64, in order), applied or not.
    """

    def __init__(
        self,
        env: Any,
        name: str | None = None,
        *,
        seed: int | None = None,
        observation_features: Mapping[str, Sequence[int]] | None = None,
        owns_env: bool = False,
        control_rate_hz: float | None = None,
    ):
        from gymnasium import spaces

        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ConfigError(f"GymRobot needs a 1-D Box observation space, got {obs_space}")
        if not isinstance(act_space, spaces.Box) or len(act_space.shape) != 1:
            raise ConfigError(f"GymRobot needs a 1-D Box action space, got {act_space}")
        self.env = env
        spec = getattr(env, "spec", None)
        self.name = name or (spec.id if spec is not None else type(env.unwrapped).__name__)
        self.seed = seed
        self.owns_env = owns_env
        self.obs_dim = int(obs_space.shape[0])
        self.action_dim = int(act_space.shape[0])
        self._obs_layout = FeatureLayout(observation_features or {"state": (self.obs_dim,)})
        if self._obs_layout.size != self.obs_dim:
            raise ConfigError(f"observation features add up to {self._obs_layout.size}, the env's observation has {self.obs_dim}")
        self._act_layout = FeatureLayout({"action": (self.action_dim,)})
        self._low = np.asarray(act_space.low, dtype=np.float64)
        self._high = np.asarray(act_space.high, dtype=np.float64)
        dt = getattr(env.unwrapped, "dt", None)
        self._rate = control_rate_hz if control_rate_hz is not None else (1.0 / dt if dt else None)
        self._connected = False
        self._obs: np.ndarray | None = None
        self._seq = 0
        self._step = 0
        self._reward: float | None = None
        self._success: bool | None = None
        self._terminated = self._truncated = False
        self.actions: collections.deque[np.ndarray] = collections.deque(maxlen=HISTORY_LIMIT)
        self.episodes = 0

    @classmethod
    def from_card(cls, task: Any, *, seed: int | None = None, **make_kwargs: Any) -> "GymRobot":
        """A robot on a task card's env (:func:`robo_reward.envs.make_env`), features named by the card."""
        from ..envs import load_card, make_env

        card = load_card(task)
        env = make_env(card, **make_kwargs)
        obs_dim = int(env.observation_space.shape[0])
        robot = cls(env, name=card.name, seed=seed, observation_features=card_observation_features(card, obs_dim),
                    owns_env=True)
        robot.card = card
        return robot

    # -- protocol
    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        """Feature name → shape (the card's observation fields, or ``state``)."""
        return dict(self._obs_layout.shapes)

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        """``{"action": (A,)}``."""
        return dict(self._act_layout.shapes)

    @property
    def is_connected(self) -> bool:
        """Whether :meth:`connect` was called (and not :meth:`disconnect`)."""
        return self._connected

    @property
    def action_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """The env's action-space bounds."""
        return self._low.copy(), self._high.copy()

    @property
    def control_rate_hz(self) -> float | None:
        """``1 / env.dt`` when the env has a ``dt``."""
        return self._rate

    @property
    def done(self) -> bool:
        """Whether the current episode has ended."""
        return self._terminated or self._truncated

    @property
    def step_count(self) -> int:
        """Actions applied since :meth:`connect`."""
        return self._step

    def connect(self) -> None:
        """Reset the env (first episode)."""
        if self._connected:
            return
        self._connected = True
        self.reset(self.seed)

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """Start a new episode; return its first observation."""
        self._require()
        obs, _ = self.env.reset(seed=seed)
        self._obs = np.asarray(obs, dtype=np.float64)
        self._terminated = self._truncated = False
        self._reward = None
        self._success = None
        self.episodes += 1
        return self.get_observation()

    def _require(self) -> None:
        if not self._connected:
            raise RobotDisconnected(f"robot {self.name!r} is not connected")

    def get_observation(self) -> dict[str, Any]:
        """The current state as features (a new reading: ``_seq`` increases)."""
        self._require()
        assert self._obs is not None
        self._seq += 1
        out: dict[str, Any] = self._obs_layout.split(self._obs)
        out.update(
            _seq=self._seq, _stamp=time.monotonic(), _step=self._step, _done=self.done,
            _terminated=self._terminated, _truncated=self._truncated, _reward=self._reward, _success=self._success,
        )
        return out

    def check_action(self, action: Mapping[str, Any]) -> np.ndarray:
        """The flat action of ``action``; :class:`RobotError` when a feature is missing, misshaped or not finite."""
        try:
            flat = self._act_layout.flatten(action).astype(np.float64)
        except ProtocolError as exc:
            raise RobotError(f"bad action: {exc}") from None
        if not np.all(np.isfinite(flat)):
            raise RobotError(f"bad action: not finite: {flat.tolist()}")
        return flat

    def send_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Step the env with ``action`` (recorded in :attr:`actions` first); return it.

        Raises:
            RobotError: the action is malformed or not finite (not applied), or the episode is over.
        """
        self._require()
        try:
            raw = np.asarray(action["action"], dtype=np.float64).reshape(-1).copy()
        except Exception:
            raw = np.full(self.action_dim, np.nan)
        self.actions.append(raw)
        flat = self.check_action(action)
        if self.done:
            raise RobotError("the episode is over: reset the robot before sending actions")
        obs, reward, terminated, truncated, info = self.env.step(flat.astype(self.env.action_space.dtype))
        self._obs = np.asarray(obs, dtype=np.float64)
        self._reward = float(reward)
        self._success = bool(info["is_success"]) if "is_success" in info else None
        self._terminated, self._truncated = bool(terminated), bool(truncated)
        self._step += 1
        return {"action": flat}

    def disconnect(self) -> None:
        """Mark disconnected (and close the env when owned)."""
        if self._connected and self.owns_env:
            self.env.close()
        self._connected = False


# ----------------------------------------------------------------------------- network client


class NetworkRobot(RobotBase):
    """A robot behind a TCP connection speaking the deploy protocol (:mod:`robo_reward.deploy.protocol`).

    Behaviour on faults (what the runtime relies on):

    * a request that gets no reply within :attr:`timeout` raises :class:`RobotTimeout`;
      the connection is kept and a late reply is discarded when it arrives;
    * a malformed message raises :class:`ProtocolError` and drops the connection;
    * a closed connection raises :class:`RobotDisconnected`;
    * after a dropped connection, the *next* call reconnects (one attempt of
      :attr:`connect_timeout` seconds) before sending; :attr:`reconnects` counts them;
    * an ``error`` reply raises :class:`RobotError` with the server's code and message.

    Args:
        host, port: the server's address.
        timeout: seconds to wait for each reply (the runtime lowers it to fit the control period).
        connect_timeout: seconds to wait for the TCP connection and the handshake.
        max_frame: largest accepted frame body in bytes.
        name: a name for logs (default: the server's robot name after connecting).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 1.0,
        connect_timeout: float = 2.0,
        max_frame: int = proto.DEFAULT_MAX_FRAME,
        name: str | None = None,
    ):
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"port must be an integer in 1..65535, got {port!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("timeouts must be positive")
        self.host, self.port = host, port
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_frame = int(max_frame)
        self.name = name or f"tcp://{host}:{port}"
        self._sock: socket.socket | None = None
        self._reader: proto.FrameReader | None = None
        self._wanted = False
        self._id = 0
        self.welcome: dict[str, Any] | None = None
        self.reconnects = 0
        self.discarded_replies = 0

    # -- connection
    def connect(self) -> None:
        """Open the connection and handshake (``hello`` → ``welcome``).

        Raises:
            RobotDisconnected: nothing listens there, or the handshake failed.
        """
        self._wanted = True
        if self._sock is None:
            self._open()

    def _open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise RobotDisconnected(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._reader = sock, proto.FrameReader(sock, self.max_frame)
        try:
            from .. import __version__

            welcome = self._exchange("hello", {"client": f"robo_reward/{__version__}"}, self.connect_timeout)
            if welcome["type"] != "welcome":
                raise ProtocolError(f"expected 'welcome', got {welcome['type']!r}")
            obs_f = proto.decode_feature_shapes(welcome["observation_features"], "welcome.observation_features")
            act_f = proto.decode_feature_shapes(welcome["action_features"], "welcome.action_features")
            low = proto.decode_array(welcome["action_low"], "welcome.action_low").astype(np.float64).reshape(-1)
            high = proto.decode_array(welcome["action_high"], "welcome.action_high").astype(np.float64).reshape(-1)
            size = FeatureLayout(act_f).size
            if low.shape != (size,) or high.shape != (size,):
                raise ProtocolError(f"welcome: action limits do not have {size} entries")
            safe = welcome.get("safe_action")
            welcome["_safe"] = None if safe is None else proto.decode_array(safe, "welcome.safe_action").astype(np.float64)
            welcome["_obs_features"], welcome["_act_features"] = obs_f, act_f
            welcome["_limits"] = (low, high)
        except Exception:
            self._drop()
            raise
        if self.welcome is not None and (
            welcome["_obs_features"] != self.welcome["_obs_features"]
            or welcome["_act_features"] != self.welcome["_act_features"]
        ):
            self._drop()
            raise ProtocolError("the robot's features changed across a reconnection")
        self.welcome = welcome
        if self.name.startswith("tcp://"):
            self.name = str(welcome["robot"])

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._reader = None, None

    def _exchange(self, type_: str, fields: Mapping[str, Any], timeout: float | None) -> dict[str, Any]:
        assert self._sock is not None and self._reader is not None
        self._id += 1
        rid = self._id
        try:
            try:
                proto.send_message(self._sock, proto.make_message(type_, rid, **fields), timeout)
            except RobotTimeout:
                self._drop()  # part of the frame may be sent: the stream is no longer in sync
                raise
            deadline = None if timeout is None else time.perf_counter() + timeout
            while True:
                left = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
                reply = self._reader.read(left)
                if reply["id"] < rid:
                    self.discarded_replies += 1  # a late reply to a request we gave up on
                    continue
                if reply["id"] != rid:
                    raise ProtocolError(f"reply id {reply['id']} does not match request id {rid}")
                break
        except (ProtocolError, RobotDisconnected):
            self._drop()
            raise
        if reply["type"] == "error":
            code, message = reply["code"], reply["message"]
            if code == "unsupported_version":
                self._drop()
                raise ProtocolError(f"the robot does not speak protocol version {proto.PROTOCOL_VERSION}: {message}")
            err = RobotError(f"robot error {code}: {message}")
            err.code = code  # type: ignore[attr-defined]
            raise err
        return reply

    def _request(self, type_: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if not self._wanted:
            raise RobotDisconnected(f"robot {self.name!r} is not connected")
        if self._sock is None:
            self.reconnects += 1
            self._open()
        return self._exchange(type_, fields or {}, self.timeout)

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open now."""
        return self._sock is not None

    # -- features and capabilities (known after connect)
    def _w(self) -> dict[str, Any]:
        if self.welcome is None:
            raise RobotDisconnected(f"robot {self.name!r}: connect first")
        return self.welcome

    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        """From the server's ``welcome``."""
        return dict(self._w()["_obs_features"])

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        """From the server's ``welcome``."""
        return dict(self._w()["_act_features"])

    @property
    def action_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """From the server's ``welcome``."""
        low, high = self._w()["_limits"]
        return low.copy(), high.copy()

    @property
    def safe_action(self) -> np.ndarray | None:
        """The server's safe action, if it declared one."""
        s = self._w()["_safe"]
        return None if s is None else s.copy()

    @property
    def control_rate_hz(self) -> float | None:
        """The server's suggested control rate, if any."""
        r = self._w().get("control_rate_hz")
        return float(r) if isinstance(r, (int, float)) and r > 0 else None

    # -- requests
    def _decode_observation(self, reply: Mapping[str, Any]) -> dict[str, Any]:
        if reply["type"] != "observation":
            self._drop()
            raise ProtocolError(f"expected 'observation', got {reply['type']!r}")
        try:
            feats = proto.decode_features(reply["features"], "observation.features")
            for k, shape in self._w()["_obs_features"].items():
                if k not in feats or _size(feats[k].shape) != _size(shape):
                    raise ProtocolError(f"observation feature {k!r} is missing or has the wrong size")
        except ProtocolError:
            self._drop()
            raise
        out: dict[str, Any] = dict(feats)
        out.update(
            _seq=int(reply["seq"]), _stamp=float(reply["stamp"]), _step=int(reply["step"]), _done=bool(reply["done"]),
            _terminated=bool(reply.get("terminated", False)), _truncated=bool(reply.get("truncated", False)),
            _reward=reply.get("reward"), _success=reply.get("success"),
        )
        return out

    def get_observation(self) -> dict[str, Any]:
        """Ask for the latest reading (see the class docstring for the faults it raises)."""
        return self._decode_observation(self._request("get_observation"))

    def send_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Send an action and wait for its acknowledgement; return the action sent."""
        feats = {k: np.asarray(v) for k, v in action.items()}
        reply = self._request("action", {"features": proto.encode_features(feats)})
        if reply["type"] != "ack":
            self._drop()
            raise ProtocolError(f"expected 'ack', got {reply['type']!r}")
        return feats

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """Start a new episode (simulated robots); return its first observation."""
        return self._decode_observation(self._request("reset", {"seed": seed}))

    def disconnect(self) -> None:
        """Say ``bye`` (briefly) and close. Idempotent."""
        self._wanted = False
        if self._sock is not None:
            try:
                self._exchange("bye", {}, min(self.timeout, 0.2))
            except Exception:
                pass
        self._drop()


# ----------------------------------------------------------------------------- LeRobot


class LeRobotAdapter(RobotBase):
    """Wraps a LeRobot robot object (``lerobot.robots.Robot``) as a :class:`Robot`.

    LeRobot describes features as ``{name: float}`` (one number, e.g. ``"shoulder_pan.pos"``)
    or ``{name: (h, w, c)}`` (a camera); ``get_observation`` returns numbers or arrays and
    ``send_action`` takes ``{name: float}``. This adapter turns those types into shapes
    (``float`` → ``()``) and arrays into numbers where LeRobot expects them.

    Args:
        robot: the LeRobot robot (anything with ``connect``, ``disconnect``,
            ``is_connected``, ``observation_features``, ``action_features``,
            ``get_observation``, ``send_action``).
        name: defaults to the robot's ``name`` or ``robot_type``.
    """

    def __init__(self, robot: Any, name: str | None = None):
        self.robot = robot
        self.name = name or str(getattr(robot, "name", None) or getattr(robot, "robot_type", "lerobot"))

    @staticmethod
    def _shapes(features: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        out = {}
        for k, v in features.items():
            out[k] = () if v in (float, int) else tuple(int(d) for d in v)
        return out

    @property
    def observation_features(self) -> dict[str, tuple[int, ...]]:
        """The robot's observation features as shapes."""
        return self._shapes(self.robot.observation_features)

    @property
    def action_features(self) -> dict[str, tuple[int, ...]]:
        """The robot's action features as shapes."""
        return self._shapes(self.robot.action_features)

    @property
    def is_connected(self) -> bool:
        """The robot's ``is_connected``."""
        return bool(self.robot.is_connected)

    def connect(self) -> None:
        """``robot.connect()``."""
        self.robot.connect()

    def get_observation(self) -> dict[str, Any]:
        """``robot.get_observation()`` with numbers as arrays."""
        return {k: np.asarray(v) for k, v in self.robot.get_observation().items()}

    def send_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """``robot.send_action`` with scalar features as Python floats."""
        shapes = self.action_features
        out = {k: (float(np.asarray(v).reshape(-1)[0]) if shapes.get(k) == () else np.asarray(v)) for k, v in action.items()}
        return self.robot.send_action(out)

    def disconnect(self) -> None:
        """``robot.disconnect()`` when connected."""
        if self.robot.is_connected:
            self.robot.disconnect()


# ----------------------------------------------------------------------------- URIs


def open_robot(uri: str, **kwargs: Any) -> RobotBase:
    """Make a robot (not yet connected) from a URI.

    * ``tcp://HOST:PORT`` — :class:`NetworkRobot` (query parameters ``timeout`` and
      ``connect_timeout``, in seconds: ``tcp://127.0.0.1:5555?timeout=0.05``);
    * ``sim:CARD`` — :class:`GymRobot` on a task card's env in this process
      (``sim:mujoco-reacher-v5?seed=0``);
    * ``gym:ENV_ID`` — :class:`GymRobot` on ``gymnasium.make(ENV_ID)`` (``?seed=0``).

    ``kwargs`` go to the robot's constructor.

    Raises:
        ConfigError: an unknown scheme or a malformed URI.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(f"a robot URI is a string like tcp://127.0.0.1:5555, got {uri!r}")
    parsed = urllib.parse.urlsplit(uri.strip())
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=False))

    def num(key: str, cast: Any = float) -> Any:
        if key not in query:
            return None
        try:
            return cast(query.pop(key))
        except ValueError:
            raise ConfigError(f"robot URI {uri!r}: {key} must be a number") from None

    if parsed.scheme == "tcp":
        if not parsed.hostname or parsed.port is None:
            raise ConfigError(f"robot URI {uri!r}: write tcp://HOST:PORT")
        for key in ("timeout", "connect_timeout"):
            val = num(key)
            if val is not None:
                kwargs.setdefault(key, val)
        if query:
            raise ConfigError(f"robot URI {uri!r}: unknown parameters {sorted(query)} (known: timeout, connect_timeout)")
        return NetworkRobot(parsed.hostname, parsed.port, **kwargs)
    if parsed.scheme in ("sim", "gym"):
        target = (parsed.netloc + parsed.path).strip("/") if parsed.netloc else parsed.path
        if not target:
            raise ConfigError(f"robot URI {uri!r}: name a task card (sim:CARD) or an env id (gym:ENV_ID)")
        seed = num("seed", int)
        if query:
            raise ConfigError(f"robot URI {uri!r}: unknown parameters {sorted(query)} (known: seed)")
        if parsed.scheme == "sim":
            return GymRobot.from_card(target, seed=seed, **kwargs)
        import gymnasium as gym

        try:
            env = gym.make(target)
        except gym.error.Error as exc:
            raise ConfigError(f"robot URI {uri!r}: {exc}") from None
        return GymRobot(env, seed=seed, owns_env=True, **kwargs)
    raise ConfigError(f"robot URI {uri!r}: unknown scheme {parsed.scheme!r}; use tcp://HOST:PORT, sim:CARD or gym:ENV_ID")


__all__ = [
    "FeatureLayout",
    "GymRobot",
    "HISTORY_LIMIT",
    "LeRobotAdapter",
    "META_KEYS",
    "NetworkRobot",
    "Robot",
    "RobotBase",
    "action_layout",
    "card_observation_features",
    "observation_layout",
    "open_robot",
]
