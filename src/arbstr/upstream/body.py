"""Rewrite the two fields arbstr may change in a client's body, leaving every other byte alone."""

from __future__ import annotations

import msgspec

from arbstr.upstream.quirks import apply_quirks

__all__ = ["rewrite_body"]

_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')
_NULL = b"null"


def rewrite_body(
    body: bytes,
    *,
    model: str | None = None,
    include_usage: bool = False,
    quirks: tuple[str, ...] = (),
    upstream_model: str = "",
) -> bytes:
    """Return `body` with `model` replaced and/or `stream_options.include_usage` injected, and
    the provider's `quirks` (upstream/quirks.py) applied for `upstream_model`.

    Only the top level is decoded (values stay `msgspec.Raw`), so tools, multimodal content and
    unknown fields are forwarded as the client wrote them. An explicit `include_usage: false`
    from the client is kept. Nothing to change: the client's bytes, as they came.
    """
    if model is None and not include_usage and not quirks:
        return body
    top = _top.decode(body)
    changed = bool(quirks) and apply_quirks(top, upstream_model, quirks)
    if model is None and not include_usage and not changed:
        return body
    if model is not None:
        top["model"] = msgspec.Raw(_encoder.encode(model))
    if include_usage:
        current = top.get("stream_options")
        if current is None or bytes(current) == _NULL:
            top["stream_options"] = _INCLUDE_USAGE
        else:
            options = msgspec.json.decode(current)
            if isinstance(options, dict) and "include_usage" not in options:
                options["include_usage"] = True
                top["stream_options"] = msgspec.Raw(_encoder.encode(options))
    return _encoder.encode(top)
