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
    "last_user_text",
    "prompt_chars",
]


class ContentPartView(msgspec.Struct):
    """A multimodal content part; only text parts count towards routing."""

    type: str = ""
    text: str | None = None


class MessageView(msgspec.Struct):
    role: str = ""
    content: str | list[ContentPartView] | None = None


class StreamOptionsView(msgspec.Struct):
    include_usage: bool | None = None


class ChatView(msgspec.Struct):
    """The routing view of a chat completion request; unknown fields are skipped, not stored."""

    model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    messages: list[MessageView] | None = None
    stream_options: StreamOptionsView | None = None


class EmbeddingsView(msgspec.Struct):
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
    """The text of the last user message (policies match keywords in it)."""
    for message in reversed(view.messages or ()):
        if message.role == "user":
            return _text(message.content)
    return ""
