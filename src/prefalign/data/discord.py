"""Reading DiscordChatExporter JSON exports, streaming, in constant memory.

The layout is the one Tyrrrz/DiscordChatExporter's ``JsonMessageWriter`` writes::

    {
      "guild": {"id", "name", "iconUrl"},
      "channel": {"id", "type", "categoryId", "category", "name", "topic"},
      "dateRange": {"after", "before"},
      "exportedAt": "...",
      "messages": [
        {"id", "type", "timestamp", "timestampEdited", "callEndedTimestamp", "isPinned",
         "content", "author": {"id", "name", "discriminator", "nickname", "isBot", ...},
         "attachments": [{"id", "url", "fileName", "fileSizeBytes"}],
         "embeds", "stickers", "reactions", "mentions",
         "reference": {"type", "messageId", "channelId", "guildId"},      # replies only
         "interaction": {"id", "name", "user": {...}}},                   # slash commands only
        ...
      ],
      "messageCount": N
    }

Fields were added over the years (``stickers``, ``reference.type``, ``interaction``,
``callEndedTimestamp``, ``inlineEmojis``...), so every field but ``id`` is optional here.
``type`` is the name of the message kind (``"Default"``, ``"Reply"``, the system kinds) or, for
kinds the exporter does not name, their number as a string. With ``--media`` the exporter
rewrites attachment URLs to paths of files beside the export.

Busy channels export to gigabytes, so messages are parsed one at a time with ijson (C backend)
and never held together: memory stays constant whatever the file size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from prefalign.errors import PrefalignError

# The kinds DiscordChatExporter names (its MessageKind enum). Default and Reply carry what people
# write; the others are system notifications and are skipped. Any other name, or a number (a
# Discord kind the exporter does not name: "20" is a slash-command response, "23" a context-menu
# command), is read by its author, text, attachments and reference like Default, and counted.
USER_KINDS = frozenset({"Default", "Reply"})
SYSTEM_KINDS = frozenset(
    {
        "RecipientAdd",
        "RecipientRemove",
        "Call",
        "ChannelNameChange",
        "ChannelIconChange",
        "ChannelPinnedMessage",
        "GuildMemberJoin",
        "ThreadCreated",
    }
)

# Discord ids ("snowflakes") carry their creation time: milliseconds since 2015-01-01 in the
# bits above 22. Reading time from the id avoids parsing a timestamp string per message.
DISCORD_EPOCH_MS = 1_420_070_400_000


def snowflake_ms(message_id: str) -> int | None:
    """Unix time in milliseconds encoded in a Discord id, or None if the id is not a snowflake."""
    try:
        return (int(message_id) >> 22) + DISCORD_EPOCH_MS
    except (TypeError, ValueError):
        return None


class DiscordExportError(PrefalignError, ValueError):
    """An export that cannot be read, naming the file, where, and the reason."""

    def __init__(self, path: str | Path, reason: str, *, after_message: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.after_message = after_message
        where = f" (after message {after_message})" if after_message else ""
        super().__init__(f"{self.path}: {reason}{where}")


@dataclass
class ExportHeader:
    """What an export says about itself before its messages."""

    path: Path
    guild: dict[str, Any] = field(default_factory=dict)
    channel: dict[str, Any] = field(default_factory=dict)
    first_message_id: str | None = None
    size: int = 0

    @property
    def channel_key(self) -> str:
        """The channel id, or the file path for exports that lack one."""
        return str(self.channel.get("id") or self.path)

    @property
    def first_ms(self) -> int:
        return snowflake_ms(self.first_message_id or "") or 0


class _CountingReader:
    """A binary file wrapper that counts bytes read, for progress bars and error positions."""

    def __init__(self, fh: BinaryIO, on_read: Callable[[int], None] | None = None):
        self._fh = fh
        self._on_read = on_read
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.position += len(data)
        if self._on_read is not None and data:
            self._on_read(len(data))
        return data


def _describe_start(path: Path) -> str | None:
    """Why a file is clearly not a JSON export, from its first bytes (None if it may be one)."""
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return "empty file: not a DiscordChatExporter JSON export"
    if head[:1] == b"{":
        return None
    if head[:1] in (b"<",):
        return "starts with '<' (an HTML or XML export?): expected DiscordChatExporter's JSON format"
    if head[:1] == b"[":
        return "a JSON array: expected DiscordChatExporter's JSON object with a 'messages' array"
    first = head.split(b"\n", 1)[0][:60].decode("utf-8", "replace")
    return f"not a JSON object (it starts with {first!r}): expected DiscordChatExporter's JSON format"


def _json_reason(exc: Exception, path: Path, reader: _CountingReader) -> str:
    """One line saying what is wrong, from ijson's (multi-line, sometimes bytes) message."""
    raw = exc.args[0] if exc.args else str(exc)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    at_end = reader.position >= path.stat().st_size
    where = f"read up to byte {reader.position} of {path.stat().st_size}"
    if isinstance(exc, UnicodeDecodeError) or "utf8" in text.lower() or "utf-8" in text.lower():
        return f"invalid UTF-8 ({where}): {text}"
    if at_end and ("premature EOF" in text or "ncomplete" in text):
        return f"truncated JSON: the file ends inside the export ({text})"
    return f"malformed JSON ({where}): {text}"


def read_header(path: str | Path) -> ExportHeader:
    """Read guild, channel and the first message id without reading the messages.

    Raises:
        DiscordExportError: the file is missing, is of another format, or is broken before its
            first message.
    """
    path = Path(path)
    if not path.is_file():
        raise DiscordExportError(path, "file not found")
    bad = _describe_start(path)
    if bad:
        raise DiscordExportError(path, bad)
    header = ExportHeader(path=path, size=path.stat().st_size)
    builders: dict[str, ijson.ObjectBuilder] = {}
    seen_messages = False
    with open(path, "rb") as fh:
        reader = _CountingReader(fh)
        try:
            for prefix, event, value in ijson.parse(reader, use_float=True):
                top = prefix.split(".", 1)[0]
                if top in ("guild", "channel"):
                    builder = builders.setdefault(top, ijson.ObjectBuilder())
                    builder.event(event, value)
                elif prefix == "messages" and event == "start_array":
                    seen_messages = True
                elif prefix == "messages.item.id":
                    header.first_message_id = str(value)
                    break
                elif prefix == "messages" and event == "end_array":
                    break  # an export with no messages
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise DiscordExportError(path, _json_reason(exc, path, reader)) from None
    if not seen_messages:
        raise DiscordExportError(
            path, "no 'messages' array: not a DiscordChatExporter JSON export (wrong export format?)"
        )
    for key, builder in builders.items():
        if isinstance(builder.value, dict):
            setattr(header, key, builder.value)
    return header


def iter_messages(
    path: str | Path, *, on_read: Callable[[int], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the messages of one export as dicts, one at a time, in file order.

    Args:
        path: a DiscordChatExporter JSON file.
        on_read: called with the number of bytes read, for progress bars.

    Raises:
        DiscordExportError: after the last good message, if the file is truncated, malformed,
            not UTF-8, or of another format; the error names the file, the byte position and the
            id of the last message read, and everything yielded before stays valid.
    """
    path = Path(path)
    bad = _describe_start(path) if path.is_file() else "file not found"
    if bad:
        raise DiscordExportError(path, bad)
    last_id: str | None = None
    with open(path, "rb") as fh:
        reader = _CountingReader(fh, on_read)
        try:
            for index, message in enumerate(ijson.items(reader, "messages.item", use_float=True)):
                if not isinstance(message, dict) or "id" not in message:
                    raise DiscordExportError(
                        path,
                        f"message #{index} is not a message object (no 'id')",
                        after_message=last_id,
                    )
                message["id"] = str(message["id"])
                last_id = message["id"]
                yield message
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise DiscordExportError(path, _json_reason(exc, path, reader), after_message=last_id) from None
    if last_id is None and os.path.getsize(path) > 0:
        # ijson yields nothing for a JSON object without "messages": say so rather than mine nothing.
        read_header(path)
