"""Throughput and peak memory of ``prefalign data from-discord`` on a large synthetic export.

Writes a DiscordChatExporter JSON export (default 200 MB) with a realistic mix — chatter with
mentions, reactions and emoji, ``!dream`` requests, the bot's replies with 4 images or a grid
and their seeds, choices by seed and by reply, other bots' embeds, system messages — then mines
it in a fresh subprocess (parse + mining + writing the dataset, as the command does) and reports
the child's own wall time and peak resident memory (its VmHWM, imports included). A smaller export is mined too:
equal peaks show that memory does not grow with the file.

    python benchmarks/bench_discord_parse.py                 # 200 MB, 3 runs, medians
    python benchmarks/bench_discord_parse.py --size-mb 1000 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefalign.testing.discord_export import FakeChannel, fake_user

WORDS = [
    "a",
    "portrait",
    "of",
    "an",
    "old",
    "sailor,",
    "oil",
    "painting,",
    "dramatic",
    "light,",
    "highly",
    "detailed,",
    "trending",
    "on",
    "artstation,",
    "cyberpunk",
    "city",
    "at",
    "night",
    "neon",
    "rain",
    "reflections",
    "cinematic",
    "8k",
    "octane",
    "render,",
    "cozy",
    "cabin",
    "in",
    "snowy",
    "mountains,",
    "watercolor,",
    "studio",
    "ghibli,",
    "a",
    "cat",
    "wearing",
    "a",
    "space",
    "suit,",
    "by",
    "greg",
    "rutkowski",
    "and",
    "alphonse",
    "mucha,",
    "猫",
    "城",
    "夜",
    "ночь",
    "город",
    "🐱",
    "🚀",
    "✨",
    "«quoted»",
    '"escaped"',
]
CHATTER = [
    "lol that's amazing",
    "how do I get better hands?? they always look cursed 😅",
    "try -C 12 and more steps, works for me",
    "anyone knows when the new model drops?",
    "@DreamBot is down again?",
    "that fox is so cute 🦊🦊🦊",
    "can we get a channel for landscapes",
]


def _prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))


def write_export(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write a synthetic export of about ``size_mb`` MB, streaming; returns the message count."""
    rng = random.Random(seed)
    users = [fake_user(str(10_000 + i), f"user{i}") for i in range(400)]
    roles = [
        {"id": str(1_002_300_000_000_000_000 + k), "name": name, "color": colour, "position": k}
        for k, (name, colour) in enumerate([("Member", None), ("Dreamer", "#3498DB"), ("Artist", "#E91E63")])
    ]
    for user in users:  # exports of guild channels list each author's roles
        user["roles"] = roles[: rng.randint(1, 3)]
    other_bot = fake_user("159985870458322944", "MEE6", bot=True)
    ch = FakeChannel("1003001", "dreambot-1", step_seconds=2.0)
    target = int(size_mb * 1_000_000)
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        head = json.dumps(ch.header(), indent=2, ensure_ascii=False)
        fh.write(head[:-2] + ',\n  "messages": [\n')
        first = True
        while fh.tell() < target:
            user = rng.choice(users)
            roll = rng.random()
            if roll < 0.45:
                msg = ch.message(
                    user, rng.choice(CHATTER) + " " + " ".join(rng.choices(WORDS, k=rng.randint(0, 25)))
                )
                if rng.random() < 0.2:
                    msg["reactions"] = [
                        {
                            "emoji": {
                                "id": None,
                                "name": "🔥",
                                "isAnimated": False,
                                "imageUrl": "https://t.co/1f525.svg",
                            },
                            "count": 3,
                        }
                    ]
            elif roll < 0.80:
                prompt = _prompt(rng)
                grid = rng.random() < 0.3
                seed0 = rng.randint(0, 2**31)
                req = ch.request(user, prompt, f"-n 4 -S {seed0} -C 7.5 -s 50" + (" -g" if grid else ""))
                if rng.random() < 0.3:
                    ch.message(rng.choice(users), rng.choice(CHATTER))
                gen = ch.generation(
                    req, [seed0 + k for k in range(4)], grid=grid, nsfw=[2] if rng.random() < 0.05 else ()
                )
                pick = rng.random()
                if pick < 0.5:
                    ch.request(user, prompt, f"-S {seed0 + rng.randint(0, 3)}")
                elif pick < 0.6 and not grid:
                    ch.message(user, "this one", attachments=[gen["attachments"][1]], reply_to=gen)
            elif roll < 0.95:
                ch.message(
                    other_bot,
                    "",
                    embeds=[
                        {
                            "title": "Level up!",
                            "description": f"{user['name']} reached level {rng.randint(2, 50)}",
                            "color": "#FFAA00",
                            "fields": [],
                            "images": [],
                        }
                    ],
                )
            else:
                ch.message(user, "", kind="GuildMemberJoin")
            for m in ch.messages:
                text = json.dumps(m, indent=2, ensure_ascii=False).replace("\n", "\n    ")
                fh.write(("" if first else ",\n") + "    " + text)
                first = False
                count += 1
            ch.messages.clear()
        fh.write(f'\n  ],\n  "messageCount": {count}\n}}\n')
    return count


CHILD = """
import sys, time
from prefalign.data.mining import from_discord
t, cpu = time.perf_counter(), time.process_time()
report = from_discord([sys.argv[1]], sys.argv[2], copy_media=False)
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
# VmHWM is this process's own peak RSS; ru_maxrss would include the parent's before exec.
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(seconds, cpu, peak_kb, report.messages, report.choices)
"""


def mine_once(export: Path, out: Path) -> tuple[float, float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS in MB, messages, choices) of one run in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(export), str(out)], capture_output=True, text=True, check=True
    )
    seconds, cpu, peak_kb, messages, choices = proc.stdout.split()
    return float(seconds), float(cpu), int(peak_kb) / 1024, int(messages), int(choices)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200.0, help="size of the large export (default 200)")
    ap.add_argument("--small-mb", type=float, default=20.0, help="size of the small export (default 20)")
    ap.add_argument(
        "--runs", type=int, default=3, help="runs of the large export; medians reported (default 3)"
    )
    ap.add_argument("--dir", help="where to write the exports (default: a temporary directory)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        small, large = tmp / "small.json", tmp / "large.json"
        t = time.perf_counter()
        write_export(small, args.small_mb, seed=1)
        n = write_export(large, args.size_mb, seed=0)
        print(
            f"wrote {large.stat().st_size / 1e6:.0f} MB ({n:,} messages) in {time.perf_counter() - t:.0f} s"
        )

        s_sec, s_cpu, s_peak, _, _ = mine_once(small, tmp / "out-small")
        size = large.stat().st_size / 1e6
        runs = [mine_once(large, tmp / f"out-{i}") for i in range(args.runs)]
        secs = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        peak = statistics.median(r[2] for r in runs)
        _, _, _, messages, choices = runs[0]
        print(
            f"small export: {args.small_mb:.0f} MB: {args.small_mb / s_sec:.1f} MB/s wall, "
            f"{args.small_mb / s_cpu:.1f} MB/s per CPU second; peak RSS {s_peak:.0f} MB"
        )
        print(
            f"large export: {size:.0f} MB, {messages:,} messages, {choices:,} choices mined; median of {args.runs}: "
            f"{size / secs:.1f} MB/s wall, {size / cpu:.1f} MB/s per CPU second; peak RSS {peak:.0f} MB"
        )
        print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
