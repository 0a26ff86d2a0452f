"""The deploy wire protocol, version 1: length-prefixed msgpack messages over TCP.

A controller (the client, :class:`~robo_reward.deploy.robot.NetworkRobot`) talks to a
robot process (the server, e.g. :class:`~robo_reward.deploy.sim_server.SimRobotServer`)
over one TCP connection. It is small on purpose, so that a robot-side server can be
written in any language with a msgpack library.

Framing
-------
Every message is one *frame*: a 4-byte unsigned big-endian length ``N``, then ``N``
bytes holding one msgpack map. ``N`` must be at least 1 and at most the receiver's
frame limit (:data:`DEFAULT_MAX_FRAME`, 1 MiB, unless both ends agree on more); a
larger length is a protocol error and the receiver closes the connection without
reading the body. Strings are UTF-8 (msgpack ``str``), binary data is msgpack ``bin``.

Envelope
--------
Every map has these keys:

``v`` (int)
    the protocol version, :data:`PROTOCOL_VERSION` (``1``). A server that gets another
    version answers ``error`` with code ``unsupported_version`` and closes.
``type`` (str)
    the message type (below).
``id`` (int)
    a request id chosen by the client (increasing); the reply carries the same id. A
    client that gave up waiting for a reply (timeout) discards replies with old ids.

Arrays
------
An array is a map ``{"dtype": str, "shape": [int, ...], "data": bin}``: ``dtype`` is a
NumPy type string, one of ``<f4 <f8 <i4 <i8 |u1 |b1`` (little-endian float32, float64,
int32, int64, uint8, bool); ``data`` is the C-order bytes (``len == prod(shape) *
itemsize``).

Messages (client → server, and the server's reply)
--------------------------------------------------
``hello {client: str}`` → ``welcome``
    ``{robot: str, server: str, observation_features: {name: [dims]},
    action_features: {name: [dims]}, action_low: array, action_high: array,
    safe_action: array | nil, control_rate_hz: float | nil, task: str | nil}``.
    The first request of every connection. Feature maps keep their order: a flat
    observation is the concatenation of the features in that order (so are actions).
``get_observation {}`` → ``observation``
    ``{seq: int, stamp: float, step: int, features: {name: array}, done: bool,
    terminated: bool, truncated: bool, reward: float | nil, success: bool | nil}``.
    ``seq`` counts sensor readings and increases with every *new* reading (a repeated
    ``seq`` means the reading is stale); ``stamp`` is the robot's monotonic clock in
    seconds when it was taken; ``step`` counts actions applied. ``done`` marks the end
    of an episode (a simulated robot then needs ``reset``); ``reward``/``success`` are
    sent by simulated robots, ``nil`` otherwise.
``action {features: {name: array}}`` → ``ack {step: int}``
    Apply an action (every action feature, finite values). The server validates it
    and answers ``error`` (code ``bad_action``) instead of applying a bad one, or
    ``episode_done`` when the episode is over.
``reset {seed: int | nil}`` → ``observation``
    Start a new episode (simulated robots; a real robot may answer ``error`` with code
    ``unsupported``).
``bye {}`` → ``bye {}``
    The server answers and closes the connection.

Errors
------
``error {code: str, message: str}`` replaces any reply. Codes: ``bad_request``
(unknown type, missing or mistyped field), ``unsupported_version``, ``bad_action``,
``episode_done``, ``unsupported``, ``internal``.

A receiver that cannot decode a frame (bad length, bytes that are not msgpack, a map
without the envelope, wrong field types) treats the stream as broken: it closes the
connection (the client reconnects on its next call).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any, Mapping

import numpy as np

from ..core.errors import MissingDependencyError
from .errors import ProtocolError, RobotDisconnected, RobotTimeout

#: The protocol version this module speaks.
PROTOCOL_VERSION = 1

#: Default largest frame body accepted, in bytes (1 MiB).
DEFAULT_MAX_FRAME = 1 << 20

#: The frame header: body length as an unsigned 32-bit big-endian integer.
HEADER = struct.Struct(">I")

#: NumPy dtype strings an array may use.
ARRAY_DTYPES = ("<f4", "<f8", "<i4", "<i8", "|u1", "|b1")

#: The fields each message type must carry (besides the envelope), with their types.
MESSAGE_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"client": (str,)},
    "welcome": {
        "robot": (str,),
        "observation_features": (dict,),
        "action_features": (dict,),
        "action_low": (dict,),
        "action_high": (dict,),
    },
    "get_observation": {},
    "observation": {
        "seq": (int,),
        "stamp": (float, int),
        "step": (int,),
        "features": (dict,),
        "done": (bool,),
    },
    "action": {"features": (dict,)},
    "ack": {"step": (int,)},
    "reset": {},
    "bye": {},
    "error": {"code": (str,), "message": (str,)},
}

#: Error codes a server may send.
ERROR_CODES = ("bad_request", "unsupported_version", "bad_action", "episode_done", "unsupported", "internal")


def _msgpack() -> Any:
    try:
        import msgpack
    except ImportError as exc:  # pragma: no cover - msgpack is a deploy dependency
        raise MissingDependencyError("msgpack", "deploy", "the deploy wire protocol") from exc
    return msgpack


# ----------------------------------------------------------------------------- arrays


def encode_array(x: Any) -> dict[str, Any]:
    """Encode an array (or a number or a sequence) as the protocol's array map.

    Float arrays of other widths are sent as float64; integer ones as int64.
    """
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype("|b1", copy=False)
    elif a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype("<f4" if a.dtype == np.float32 else "<f8", copy=False)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype("<i4" if a.dtype == np.int32 else "<i8", copy=False)
    else:
        raise ProtocolError(f"cannot send an array of dtype {a.dtype}")
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(m: Any, what: str = "array") -> np.ndarray:
    """Decode the protocol's array map; :class:`ProtocolError` when it is malformed."""
    if not isinstance(m, Mapping):
        raise ProtocolError(f"{what}: expected an array map, got {type(m).__name__}")
    dtype, shape, data = m.get("dtype"), m.get("shape"), m.get("data")
    if dtype not in ARRAY_DTYPES:
        raise ProtocolError(f"{what}: dtype {dtype!r} is not one of {', '.join(ARRAY_DTYPES)}")
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(f"{what}: shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError(f"{what}: data must be binary, got {type(data).__name__}")
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(data) != n * dt.itemsize:
        raise ProtocolError(f"{what}: {len(data)} bytes of data for shape {list(shape)} of {dtype}")
    return np.frombuffer(bytes(data), dtype=dt).reshape(shape)


def encode_features(features: Mapping[str, Any]) -> dict[str, Any]:
    """Encode a mapping of feature name → array (order kept)."""
    return {str(k): encode_array(v) for k, v in features.items()}


def decode_features(m: Any, what: str = "features") -> dict[str, np.ndarray]:
    """Decode a mapping of feature name → array map (order kept)."""
    if not isinstance(m, Mapping):
        raise ProtocolError(f"{what}: expected a map, got {type(m).__name__}")
    out = {}
    for k, v in m.items():
        if not isinstance(k, str):
            raise ProtocolError(f"{what}: feature names must be strings, got {k!r}")
        out[k] = decode_array(v, f"{what}[{k!r}]")
    return out


def encode_feature_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[int]]:
    """``{name: (dims...)}`` → ``{name: [dims...]}`` for ``welcome``."""
    return {str(k): [int(d) for d in v] for k, v in shapes.items()}


def decode_feature_shapes(m: Any, what: str) -> dict[str, tuple[int, ...]]:
    """Validate and decode ``{name: [dims...]}``."""
    if not isinstance(m, Mapping) or not m:
        raise ProtocolError(f"{what}: expected a non-empty map of feature name to shape")
    out: dict[str, tuple[int, ...]] = {}
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v
        ):
            raise ProtocolError(f"{what}: bad entry {k!r}: {v!r}")
        out[k] = tuple(int(d) for d in v)
    return out


# ----------------------------------------------------------------------------- messages


def make_message(type_: str, id_: int, **fields: Any) -> dict[str, Any]:
    """A message map with the envelope (``v``, ``type``, ``id``) and ``fields``."""
    return {"v": PROTOCOL_VERSION, "type": type_, "id": int(id_), **fields}


def pack(msg: Mapping[str, Any]) -> bytes:
    """One frame (header + msgpack body) for ``msg``."""
    body = _msgpack().packb(dict(msg), use_bin_type=True)
    return HEADER.pack(len(body)) + body


def unpack_body(body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> dict[str, Any]:
    """Decode a frame body and check the envelope and the fields of its type.

    Raises:
        ProtocolError: not msgpack, not a map, wrong version, unknown type, missing or
            mistyped fields. The message says which.
    """
    msgpack = _msgpack()
    try:
        msg = msgpack.unpackb(
            body, raw=False, strict_map_key=True, max_bin_len=max_frame, max_str_len=max_frame,
            max_array_len=max_frame, max_map_len=max_frame, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"a frame is not valid msgpack: {type(exc).__name__}: {exc}") from None
    return check_message(msg)


def check_message(msg: Any) -> dict[str, Any]:
    """Check a decoded message (envelope and fields); return it.

    Raises:
        ProtocolError: see :func:`unpack_body`.
    """
    if not isinstance(msg, dict):
        raise ProtocolError(f"a message must be a map, got {type(msg).__name__}")
    v = msg.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {v!r} (this end speaks version {PROTOCOL_VERSION})", code="unsupported_version"
        )
    t = msg.get("type")
    if not isinstance(t, str) or t not in MESSAGE_FIELDS:
        raise ProtocolError(f"unknown message type {t!r}; known: {', '.join(MESSAGE_FIELDS)}")
    i = msg.get("id")
    if not isinstance(i, int) or isinstance(i, bool):
        raise ProtocolError(f"message {t!r} has no integer 'id' (got {i!r})")
    for key, types in MESSAGE_FIELDS[t].items():
        val = msg.get(key)
        if not isinstance(val, types) or (isinstance(val, bool) and bool not in types):
            raise ProtocolError(
                f"message {t!r}: field {key!r} must be {' or '.join(tp.__name__ for tp in types)}, got {val!r:.80}"
            )
    return msg


# ----------------------------------------------------------------------------- sockets


def send_message(sock: socket.socket, msg: Mapping[str, Any], timeout: float | None = None) -> None:
    """Send one message (``timeout`` seconds at most; ``None`` blocks).

    Raises:
        RobotTimeout: the peer does not read (its buffers are full).
        RobotDisconnected: the connection is closed or broken.
    """
    data = pack(msg)
    try:
        sock.settimeout(timeout)
        sock.sendall(data)
    except socket.timeout:
        raise RobotTimeout("timed out sending a message") from None
    except OSError as exc:
        raise RobotDisconnected(f"connection lost while sending: {exc}") from None


class FrameReader:
    """Reads frames from a socket, keeping partial data between calls.

    A read that times out in the middle of a frame leaves what was received in the
    buffer, so the next read continues where it stopped and the stream stays in sync.

    Args:
        sock: a connected stream socket.
        max_frame: the largest body accepted (bytes).
    """

    def __init__(self, sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME):
        self.sock = sock
        self.max_frame = int(max_frame)
        self._buf = bytearray()

    def _frame_from_buffer(self) -> bytes | None:
        if len(self._buf) < HEADER.size:
            return None
        (n,) = HEADER.unpack_from(self._buf)
        if n < 1 or n > self.max_frame:
            raise ProtocolError(f"frame length {n} is outside 1..{self.max_frame} bytes")
        if len(self._buf) < HEADER.size + n:
            return None
        body = bytes(self._buf[HEADER.size : HEADER.size + n])
        del self._buf[: HEADER.size + n]
        return body

    def read(self, timeout: float | None) -> dict[str, Any]:
        """Read and decode the next message, waiting ``timeout`` seconds at most (``None``: forever).

        Raises:
            RobotTimeout: no whole frame arrived in time (partial data is kept).
            RobotDisconnected: the peer closed the connection.
            ProtocolError: the frame is malformed.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            body = self._frame_from_buffer()
            if body is not None:
                return unpack_body(body, self.max_frame)
            if deadline is None:
                self.sock.settimeout(None)
            else:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise RobotTimeout(f"no reply within {timeout:.4f} s")
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise RobotTimeout(f"no reply within {timeout:.4f} s") from None
            except OSError as exc:
                raise RobotDisconnected(f"connection lost while reading: {exc}") from None
            if not chunk:
                raise RobotDisconnected("the peer closed the connection")
            self._buf += chunk


__all__ = [
    "ARRAY_DTYPES",
    "DEFAULT_MAX_FRAME",
    "ERROR_CODES",
    "FrameReader",
    "HEADER",
    "MESSAGE_FIELDS",
    "PROTOCOL_VERSION",
    "check_message",
    "decode_array",
    "decode_feature_shapes",
    "decode_features",
    "encode_array",
    "encode_feature_shapes",
    "encode_features",
    "make_message",
    "pack",
    "send_message",
    "unpack_body",
]
