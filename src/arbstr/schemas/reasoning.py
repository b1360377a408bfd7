"""Reasoning normalisation (`[server] normalize_reasoning`): an answer whose `content` is
empty gets its `reasoning_content` (or `reasoning`) as content, for clients that only read
`content`. Only bodies that carry a reasoning field are decoded; the rest pass as they are."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["normalize_chat_body", "normalize_chunk_event"]

_MARK = b'"reasoning'
_encoder = msgspec.json.Encoder()


def _fill(part: Any) -> bool:
    """Copy the reasoning into an empty `content` of one message or delta."""
    if not isinstance(part, dict) or part.get("content"):
        return False
    reasoning = part.get("reasoning_content") or part.get("reasoning")
    if not isinstance(reasoning, str) or not reasoning:
        return False
    part["content"] = reasoning
    return True


def _normalize(answer: Any, field: str) -> bool:
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        return False
    changed = False
    for choice in answer["choices"]:
        if isinstance(choice, dict):
            changed = _fill(choice.get(field)) or changed
    return changed


def normalize_chat_body(body: bytes) -> bytes:
    """A whole chat completion: each choice's `message`."""
    if _MARK not in body:
        return body
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    return _encoder.encode(answer) if _normalize(answer, "message") else body


def normalize_chunk_event(raw: bytes) -> bytes:
    """One SSE event of a stream (`data: {chunk}`): each choice's `delta`."""
    if _MARK not in raw:
        return raw
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        try:
            chunk = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return raw
        if _normalize(chunk, "delta"):
            lines[i] = b"data: " + _encoder.encode(chunk)
            return b"\n".join(lines)
        return raw
    return raw
