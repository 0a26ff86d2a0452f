"""A simulated robot server: a task card's env behind the deploy wire protocol, over TCP.

:class:`SimRobotServer` runs a :class:`~robo_reward.deploy.robot.GymRobot` (MuJoCo,
MetaWorld, PyBullet... whatever the card builds) and answers the messages of
:mod:`robo_reward.deploy.protocol`, so every deploy path — the network client, the
runtime, the safety layer — can be exercised on one machine::

    with SimRobotServer.from_card("mujoco-reacher-v5", seed=0) as server:   # 127.0.0.1, free port
        with NetworkRobot(*server.address) as robot:
            obs = robot.get_observation()

or from the command line: ``robo-reward deploy serve-sim mujoco-reacher-v5 --port 5555``.

The simulation is lock-step: each ``action`` message is one env step; each
``get_observation`` is a new reading (its ``seq`` increases). One client is served at
a time; the env keeps its state across connections (like a robot whose controller
reconnects). Every action message received, valid or not, is recorded in
:attr:`SimRobotServer.received_actions` (tests check that only safe actions arrive).

Fault injection (:class:`Fault`) makes the server misbehave on purpose, triggered by
the first ``get_observation`` at or after a given env step: ``stall`` (answer late),
``disconnect`` (close the connection), ``malformed`` (answer with a broken frame),
``stale`` (repeat the previous reading) and ``nan`` (a NaN in the observation).
"""

from __future__ import annotations

import collections
import dataclasses
import socket
import threading
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..core.errors import ConfigError
from . import protocol as proto
from .errors import ProtocolError, RobotDisconnected, RobotError, RobotTimeout
from .robot import HISTORY_LIMIT, FeatureLayout, GymRobot

#: Fault kinds the server can inject.
FAULT_KINDS = ("stall", "disconnect", "malformed", "stale", "nan")

#: Variants of the ``malformed`` fault.
MALFORMED_VARIANTS = ("garbage", "version", "oversize", "fields")


@dataclasses.dataclass
class Fault:
    """One injected fault, triggered by the first ``get_observation`` at or after env step ``at_step``.

    Attributes:
        kind: ``stall`` (wait ``seconds`` before answering), ``disconnect`` (close the
            connection instead of answering), ``malformed`` (answer with a broken frame of
            ``variant``: ``garbage`` bytes that are not msgpack, a wrong protocol
            ``version``, an ``oversize`` length prefix, or mistyped ``fields``), ``stale``
            (repeat the previous reading ``count`` times) or ``nan`` (a NaN in the next
            ``count`` observations).
        at_step: env steps (actions applied) before it triggers.
        seconds: stall duration.
        count: how many replies a ``stale``/``nan``/``malformed`` fault affects.
        variant: the ``malformed`` variant.
    """

    kind: str
    at_step: int = 0
    seconds: float = 0.0
    count: int = 1
    variant: str = "garbage"
    remaining: int = dataclasses.field(default=-1, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {self.kind!r}; valid: {', '.join(FAULT_KINDS)}")
        if self.at_step < 0 or self.count < 1 or self.seconds < 0:
            raise ConfigError(f"fault {self.kind}: at_step and seconds must be >= 0, count >= 1")
        if self.kind == "malformed" and self.variant not in MALFORMED_VARIANTS:
            raise ConfigError(f"malformed variant {self.variant!r}; valid: {', '.join(MALFORMED_VARIANTS)}")
        if self.remaining < 0:
            self.remaining = self.count if self.kind in ("stale", "nan", "malformed") else 1

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        """Parse ``KIND@STEP[:ARG]``: ``stall@20:0.5`` (seconds), ``disconnect@40``,
        ``malformed@10:garbage`` (variant), ``stale@5:3`` (count), ``nan@7:2`` (count).

        Raises:
            ConfigError: a malformed spec.
        """
        kind, at, rest = spec.partition("@")
        step_s, _, arg = rest.partition(":")
        try:
            step = int(step_s) if at else 0
            kw: dict[str, Any] = {}
            if arg:
                if kind.strip() == "stall":
                    kw["seconds"] = float(arg)
                elif kind.strip() == "malformed":
                    kw["variant"] = arg
                else:
                    kw["count"] = int(arg)
        except ValueError:
            raise ConfigError(
                f"bad fault spec {spec!r}; write KIND@STEP[:ARG], e.g. stall@20:0.5, disconnect@40, "
                "malformed@10:garbage, stale@5:3, nan@7"
            ) from None
        return cls(kind.strip(), step, **kw)


class SimRobotServer:
    """Serve a :class:`~robo_reward.deploy.robot.GymRobot` over TCP with the deploy protocol.

    Args:
        robot: the simulated robot (connected by :meth:`start`).
        host: address to bind (default ``127.0.0.1``: loopback only).
        port: port to bind (``0``: a free one; see :attr:`address`).
        faults: faults to inject (:class:`Fault` or spec strings).
        safe_action: the flat safe action announced in ``welcome`` (default: none).
        task: card name announced in ``welcome``.
        max_frame: largest accepted frame body in bytes.
        log: called with one line per event (connections, faults, errors).

    Attributes:
        received_actions: flat float64 copies of every action message received, in order.
        connections: number of client connections accepted so far.
        errors: error replies sent, as ``(code, message)``.
    """

    def __init__(
        self,
        robot: GymRobot,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: Iterable[Fault | str] = (),
        safe_action: Any = None,
        task: str | None = None,
        max_frame: int = proto.DEFAULT_MAX_FRAME,
        log: Callable[[str], None] | None = None,
    ):
        self.robot = robot
        self.host, self.port = host, int(port)
        self.faults = [f if isinstance(f, Fault) else Fault.parse(f) for f in faults]
        self.safe_action = None if safe_action is None else np.asarray(safe_action, dtype=np.float64).reshape(-1)
        if self.safe_action is not None and self.safe_action.shape != (robot.action_dim,):
            raise ConfigError(f"safe_action must have {robot.action_dim} entries, got {self.safe_action.shape}")
        self.task = task
        self.max_frame = int(max_frame)
        self.log = log or (lambda line: None)
        self.received_actions: collections.deque[np.ndarray] = collections.deque(maxlen=HISTORY_LIMIT)
        self.connections = 0
        self.errors: list[tuple[str, str]] = []
        self._listen: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self._last_obs: dict[str, Any] | None = None
        self._act_layout = FeatureLayout(robot.action_features)

    @classmethod
    def from_card(cls, task: Any, *, seed: int | None = None, max_episode_steps: int | None = None,
                  **kwargs: Any) -> "SimRobotServer":
        """A server on a task card's env (``GymRobot.from_card``); ``kwargs`` go to the constructor.

        ``max_episode_steps`` overrides the card's episode length.
        """
        make_kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
        robot = GymRobot.from_card(task, seed=seed, **make_kwargs)
        kwargs.setdefault("task", robot.name)
        return cls(robot, **kwargs)

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on (after :meth:`bind`/:meth:`start`)."""
        if self._listen is None:
            raise RobotDisconnected("the server is not listening; call start() first")
        host, port = self._listen.getsockname()[:2]
        return host, port

    @property
    def uri(self) -> str:
        """``tcp://host:port`` for :func:`~robo_reward.deploy.robot.open_robot`."""
        host, port = self.address
        return f"tcp://{host}:{port}"

    def bind(self) -> "SimRobotServer":
        """Connect the simulated robot and open the listening socket (idempotent)."""
        if self._listen is None:
            if not self.robot.is_connected:
                self.robot.connect()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc}") from None
            sock.listen(4)
            sock.settimeout(0.05)
            self._listen = sock
        return self

    def start(self) -> "SimRobotServer":
        """Bind and serve in a background thread; return ``self``."""
        self.bind()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.serve_forever, name="sim-robot-server", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, close every socket and the simulated robot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close_conn()
        if self._listen is not None:
            self._listen.close()
            self._listen = None
        self.robot.disconnect()

    def shutdown(self) -> None:
        """Ask :meth:`serve_forever` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def __enter__(self) -> "SimRobotServer":
        """Start and return ``self``."""
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        """Stop."""
        self.stop()

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def serve_forever(self) -> None:
        """Accept and serve clients one at a time until :meth:`stop` (or ``KeyboardInterrupt``)."""
        self.bind()
        assert self._listen is not None
        listen = self._listen
        while not self._stop.is_set():
            try:
                conn, peer = listen.accept()
            except socket.timeout:
                continue
            except OSError:
                break  # closed by stop()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            self._conn = conn
            self.log(f"client connected from {peer[0]}:{peer[1]}")
            try:
                self._serve_connection(conn)
            finally:
                self._close_conn()
                self.log("client disconnected")

    # ------------------------------------------------------------------ one connection
    def _serve_connection(self, conn: socket.socket) -> None:
        reader = proto.FrameReader(conn, self.max_frame)
        while not self._stop.is_set():
            try:
                msg = reader.read(0.05)
            except RobotTimeout:
                continue
            except RobotDisconnected:
                return
            except ProtocolError as exc:
                self._reply_error(conn, 0, exc.code, str(exc))
                return  # the stream cannot be trusted any more
            try:
                keep = self._handle(conn, msg)
            except (RobotDisconnected, RobotTimeout):
                return
            if not keep:
                return

    def _send(self, conn: socket.socket, msg: Mapping[str, Any]) -> None:
        proto.send_message(conn, msg, timeout=1.0)

    def _reply_error(self, conn: socket.socket, id_: int, code: str, message: str) -> None:
        self.errors.append((code, message))
        self.log(f"error reply {code}: {message}")
        try:
            self._send(conn, proto.make_message("error", id_, code=code, message=message))
        except (RobotDisconnected, RobotTimeout):
            pass

    def _welcome(self, id_: int) -> dict[str, Any]:
        r = self.robot
        low, high = r.action_limits
        return proto.make_message(
            "welcome", id_,
            robot=r.name, server=f"robo_reward.sim_server/{proto.PROTOCOL_VERSION}",
            observation_features=proto.encode_feature_shapes(r.observation_features),
            action_features=proto.encode_feature_shapes(r.action_features),
            action_low=proto.encode_array(low), action_high=proto.encode_array(high),
            safe_action=None if self.safe_action is None else proto.encode_array(self.safe_action),
            control_rate_hz=r.control_rate_hz, task=self.task,
        )

    def _observation_msg(self, id_: int, obs: Mapping[str, Any]) -> dict[str, Any]:
        feats = {k: v for k, v in obs.items() if not k.startswith("_")}
        reward = obs.get("_reward")
        success = obs.get("_success")
        return proto.make_message(
            "observation", id_,
            seq=int(obs["_seq"]), stamp=float(obs["_stamp"]), step=int(obs["_step"]),
            features=proto.encode_features(feats), done=bool(obs["_done"]),
            terminated=bool(obs["_terminated"]), truncated=bool(obs["_truncated"]),
            reward=None if reward is None else float(reward), success=None if success is None else bool(success),
        )

    def _due(self) -> list[Fault]:
        step = self.robot.step_count
        return [f for f in self.faults if f.remaining > 0 and step >= f.at_step]

    def _handle(self, conn: socket.socket, msg: dict[str, Any]) -> bool:
        """Answer one message; return ``False`` to close the connection."""
        t, id_ = msg["type"], msg["id"]
        if t == "hello":
            self._send(conn, self._welcome(id_))
            return True
        if t == "bye":
            self._send(conn, proto.make_message("bye", id_))
            return False
        if t == "get_observation":
            return self._answer_observation(conn, id_)
        if t == "action":
            return self._apply_action(conn, id_, msg)
        if t == "reset":
            seed = msg.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                self._reply_error(conn, id_, "bad_request", f"reset: seed must be an integer or nil, got {seed!r}")
                return True
            obs = self.robot.reset(seed)
            self._last_obs = obs
            self._send(conn, self._observation_msg(id_, obs))
            return True
        self._reply_error(conn, id_, "bad_request", f"a client may not send {t!r}")
        return True

    def _answer_observation(self, conn: socket.socket, id_: int) -> bool:
        obs: dict[str, Any] | None = None
        for fault in self._due():
            fault.remaining -= 1
            self.log(f"injecting fault {fault.kind} at step {self.robot.step_count}")
            if fault.kind == "stall":
                end = time.perf_counter() + fault.seconds
                while time.perf_counter() < end and not self._stop.is_set():
                    time.sleep(min(0.005, max(end - time.perf_counter(), 0.0)))
            elif fault.kind == "disconnect":
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return False
            elif fault.kind == "malformed":
                self._send_malformed(conn, id_, fault.variant)
                return True
            elif fault.kind == "stale" and self._last_obs is not None:
                obs = dict(self._last_obs)
            elif fault.kind == "nan":
                obs = dict(obs or self.robot.get_observation())
                first = next(k for k in obs if not k.startswith("_"))
                bad = np.array(obs[first], dtype=np.float64, copy=True)
                bad.reshape(-1)[0] = np.nan
                obs[first] = bad
        if obs is None:
            obs = self.robot.get_observation()
        self._last_obs = obs
        self._send(conn, self._observation_msg(id_, obs))
        return True

    def _send_malformed(self, conn: socket.socket, id_: int, variant: str) -> None:
        if variant == "garbage":
            data = proto.HEADER.pack(4) + b"\xc1\xc1\xc1\xc1"  # 0xc1 is never used in msgpack
        elif variant == "oversize":
            data = proto.HEADER.pack(0xFFFFFFF0)
        elif variant == "version":
            msg = self._observation_msg(id_, self.robot.get_observation())
            msg["v"] = proto.PROTOCOL_VERSION + 98
            data = proto.pack(msg)
        else:  # fields
            msg = self._observation_msg(id_, self.robot.get_observation())
            msg["seq"] = "not a number"
            data = proto.pack(msg)
        try:
            conn.sendall(data)
        except OSError:
            pass

    def _apply_action(self, conn: socket.socket, id_: int, msg: Mapping[str, Any]) -> bool:
        try:
            feats = proto.decode_features(msg["features"], "action.features")
        except ProtocolError as exc:
            self.received_actions.append(np.full(self._act_layout.size, np.nan))
            self._reply_error(conn, id_, "bad_action", str(exc))
            return True
        try:
            flat = self._act_layout.flatten(feats).astype(np.float64)
        except ProtocolError as exc:
            flat = np.full(self._act_layout.size, np.nan)
            self.received_actions.append(flat)
            self._reply_error(conn, id_, "bad_action", str(exc))
            return True
        # record the exact values received (float64 when the client sent float64)
        exact = np.concatenate([np.asarray(feats[k], dtype=np.float64).reshape(-1) for k in self._act_layout.names])
        self.received_actions.append(exact)
        try:
            self.robot.send_action({"action": exact})
        except RobotError as exc:
            code = "episode_done" if self.robot.done else "bad_action"
            self._reply_error(conn, id_, code, str(exc))
            return True
        self._send(conn, proto.make_message("ack", id_, step=self.robot.step_count))
        return True


__all__ = ["FAULT_KINDS", "Fault", "MALFORMED_VARIANTS", "SimRobotServer"]
