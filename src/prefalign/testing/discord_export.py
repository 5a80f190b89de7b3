"""Build DiscordChatExporter JSON exports in code, for tests and the parse benchmark.

The messages have the shape JsonMessageWriter writes (ids are real snowflakes carrying their
time), so the miner sees what it sees in a real export::

    ch = FakeChannel("1001", "dreambot-1")
    alice = fake_user("1", "alice")
    req = ch.request(alice, "a red fox", "-n 4 -S 100")
    gen = ch.generation(req, seeds=[100, 101, 102, 103])
    ch.request(alice, "a red fox", "-S 102")        # alice chooses the third image
    ch.write("export.json")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prefalign.data.discord import DISCORD_EPOCH_MS

GUILD = {
    "id": "1002032694760706078",
    "name": "Stable Foundation",
    "iconUrl": "https://cdn.discordapp.com/icons/g.png",
}
CDN = "https://cdn.discordapp.com/attachments"


def fake_user(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    """An author object as the exporter writes it."""
    return {
        "id": user_id,
        "name": name,
        "discriminator": "0000" if bot else f"{int(user_id) % 10000:04d}",
        "nickname": name.title(),
        "color": None,
        "isBot": bot,
        "roles": [],
        "avatarUrl": f"https://cdn.discordapp.com/avatars/{user_id}/a.png",
    }


DREAMBOT = fake_user("1009509120440934400", "DreamBot", bot=True)


def quote_prompt(prompt: str) -> str:
    """A prompt as a user types it in a request: in double quotes, inner quotes escaped."""
    return '"' + prompt.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FakeChannel:
    """A channel whose messages are appended in time order."""

    def __init__(
        self, channel_id: str, name: str, *, start: datetime | None = None, step_seconds: float = 7.0
    ):
        self.channel = {
            "id": channel_id,
            "type": "GuildTextChat",
            "categoryId": "1002292111942635562",
            "category": "SDBot Rooms",
            "name": name,
            "topic": None,
        }
        self.messages: list[dict[str, Any]] = []
        self.now = start or datetime(2022, 9, 1, 12, 0, tzinfo=timezone.utc)
        self.step = timedelta(seconds=step_seconds)
        self._seq = 0

    def _next_id(self) -> str:
        self.now += self.step
        self._seq += 1
        ms = int(self.now.timestamp() * 1000)
        return str(((ms - DISCORD_EPOCH_MS) << 22) | (self._seq & 0xFFF))

    def wait(self, seconds: float) -> None:
        """Let time pass (choices later than the miner's window are not linked)."""
        self.now += timedelta(seconds=seconds)

    def message(
        self,
        author: dict[str, Any],
        content: str = "",
        *,
        attachments: Sequence[dict[str, Any]] = (),
        reply_to: dict[str, Any] | None = None,
        kind: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one message (a reply if ``reply_to`` is given) and return it."""
        mid = self._next_id()
        msg: dict[str, Any] = {
            "id": mid,
            "type": kind or ("Reply" if reply_to else "Default"),
            "timestamp": self.now.isoformat(timespec="milliseconds"),
            "timestampEdited": None,
            "callEndedTimestamp": None,
            "isPinned": False,
            "content": content,
            "author": author,
            "attachments": list(attachments),
            "components": [],
            "embeds": [],
            "stickers": [],
            "reactions": [],
            "mentions": [reply_to["author"]] if reply_to else [],
        }
        if reply_to is not None:
            msg["reference"] = {
                "type": "Default",
                "messageId": reply_to["id"],
                "channelId": self.channel["id"],
                "guildId": GUILD["id"],
            }
        msg.update(extra)
        msg["inlineEmojis"] = []
        self.messages.append(msg)
        return msg

    def attachment(self, file_name: str, size: int = 412_345) -> dict[str, Any]:
        """An attachment hosted on Discord's CDN."""
        self._seq += 1
        att_id = str(1_010_000_000_000_000_000 + self._seq)
        return {
            "id": att_id,
            "url": f"{CDN}/{self.channel['id']}/{att_id}/{file_name}",
            "fileName": file_name,
            "fileSizeBytes": size,
        }

    def request(self, user: dict[str, Any], prompt: str, flags: str = "", **kw: Any) -> dict[str, Any]:
        """A ``!dream "PROMPT" FLAGS`` request."""
        return self.message(user, f"!dream {quote_prompt(prompt)} {flags}".rstrip(), **kw)

    def generation(
        self,
        request: dict[str, Any],
        seeds: Sequence[int],
        *,
        images: int | None = None,
        grid: bool = False,
        nsfw: Iterable[int] = (),
        seeds_style: str = "list",
        bot: dict[str, Any] | None = None,
        reference: bool = True,
    ) -> dict[str, Any]:
        """The bot's reply to ``request`` with images (one per seed, or one grid) naming the seeds.

        Args:
            images: how many image attachments (default: one per seed, or 1 for a grid).
            nsfw: positions of images the bot spoilers.
            seeds_style: ``"list"`` (``The seeds for each individual image are [...]``) or
                ``"commands"`` (one ``!dream ... -S seed`` line per image).
            reference: False for exports from before replies were recorded.
        """
        prompt = request["content"].split('"', 1)[1].rsplit('"', 1)[0]
        user = request["author"]
        if seeds_style == "list":
            text = f'<@{user["id"]}> !dream "{prompt}"\nThe seeds for each individual image are [{", ".join(map(str, seeds))}]'
        else:
            text = f"<@{user['id']}>\n" + "\n".join(f'!dream "{prompt}" -S {s}' for s in seeds)
        nsfw = set(nsfw)
        count = 1 if grid else (len(seeds) if images is None else images)
        atts = []
        for k in range(count):
            name = f"grid_{seeds[0]}.png" if grid else f"{seeds[k] if k < len(seeds) else k}.png"
            atts.append(self.attachment(("SPOILER_" if k in nsfw else "") + name))
        msg = self.message(bot or DREAMBOT, text, attachments=atts, reply_to=request)
        if not reference:
            del msg["reference"]
            msg["type"] = "Default"
        return msg

    def header(self) -> dict[str, Any]:
        return {
            "guild": GUILD,
            "channel": self.channel,
            "dateRange": {"after": None, "before": None},
            "exportedAt": "2022-10-01T00:00:00.000+00:00",
        }

    def write(
        self,
        path: str | Path,
        messages: Sequence[dict[str, Any]] | None = None,
        *,
        legacy: bool = False,
    ) -> Path:
        """Write an export of ``messages`` (default: all), indented as the exporter writes it.

        ``legacy`` drops the fields older exporters did not write (reference, stickers,
        components, callEndedTimestamp, inlineEmojis, interaction).
        """
        msgs = list(self.messages if messages is None else messages)
        if legacy:
            old = ("reference", "stickers", "components", "callEndedTimestamp", "inlineEmojis", "interaction")
            msgs = [{k: v for k, v in m.items() if k not in old} for m in msgs]
        root = dict(self.header(), messages=msgs, messageCount=len(msgs))
        path = Path(path)
        path.write_text(json.dumps(root, indent=2, ensure_ascii=False), encoding="utf-8")
        return path
