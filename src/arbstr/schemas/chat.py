"""View Structs of OpenAI request bodies: only what routing needs, the rest stays raw bytes."""

from __future__ import annotations

import msgspec

__all__ = [
    "ChatView",
    "ContentPartView",
    "EmbeddingsView",
    "MessageView",
    "StreamOptionsView",
    "chat_decoder",
    "embeddings_decoder",
    "input_chars",
    "last_user_text",
    "prompt_chars",
]

# Unknown fields are skipped by the decoder (never stored, never forbidden): the gateway forwards
# the original bytes, so tools, response_format, image parts and vendor fields pass untouched.
# `gc=False`: views never form reference cycles, so the collector need not track them.


class _View(msgspec.Struct, gc=False):
    """Shared base of the request views."""


class ContentPartView(_View):
    """A multimodal content part; only text parts count towards routing."""

    type: str = ""
    text: str | None = None


class MessageView(_View):
    """One chat message: its role and its text, as a string or a list of parts."""

    role: str = ""
    content: str | list[ContentPartView] | None = None


class StreamOptionsView(_View):
    """`stream_options`: whether the client asked for the usage chunk."""

    include_usage: bool | None = None


class ChatView(_View):
    """The routing view of a chat completion request."""

    model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    messages: list[MessageView] | None = None
    stream_options: StreamOptionsView | None = None


class EmbeddingsView(_View):
    """The routing view of an embeddings request.

    `input` is a string, a list of strings, a token array or a list of token arrays; msgspec
    allows one array type per union, so the list items are typed as a union instead.
    """

    model: str | None = None
    input: str | list[str | int | list[int]] | None = None


chat_decoder = msgspec.json.Decoder(ChatView)
embeddings_decoder = msgspec.json.Decoder(EmbeddingsView)


def _text(content: str | list[ContentPartView] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(part.text for part in content if part.text)


def prompt_chars(view: ChatView) -> int:
    """Characters of text in all messages (the basis of the chars/4 token estimate)."""
    total = 0
    for message in view.messages or ():
        content = message.content
        if isinstance(content, str):
            total += len(content)
        elif content:
            total += sum(len(part.text) for part in content if part.text)
    return total


def last_user_text(view: ChatView) -> str:
    """The text of the last user message (policies match keywords in it); text parts joined."""
    for message in reversed(view.messages or ()):
        if message.role == "user":
            return _text(message.content)
    return ""


def input_chars(view: EmbeddingsView) -> int:
    """Character-equivalent size of an embeddings input; a token id counts as 4 characters."""
    value = view.input
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    total = 0
    for item in value:
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, int):
            total += 4
        else:
            total += 4 * len(item)
    return total
