"""Gymnasium's vector ``info`` format (a dict of ``[n]`` arrays with ``_key`` masks), read per sub-env."""

from __future__ import annotations

from typing import Any, Mapping


def unbatch_infos(infos: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """Turn a Gymnasium vector ``info`` (dict of arrays with ``_key`` masks) into ``n`` per-env dicts."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if isinstance(value, Mapping):
            subs = unbatch_infos(value, n)
            for i in range(n):
                if mask is None or mask[i]:
                    out[i][key] = subs[i]
            continue
        for i in range(n):
            if mask is None or mask[i]:
                out[i][key] = value[i]
    return out
