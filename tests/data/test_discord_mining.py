"""Mining choices from realistic DiscordChatExporter exports built in code.

Each scenario of the fixture states the choice it must give (or the reason it is skipped), so a
wrong rule shows up as a wrong or missing record, or a wrong count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefalign.data import load_dataset
from prefalign.data.discord import DiscordExportError, iter_messages, read_header
from prefalign.data.mining import MiningError, from_discord, hash_user, read_mining_report
from prefalign.testing.discord_export import DREAMBOT, FakeChannel, fake_user

ALICE, BOB, CAROL, DAVE = (
    fake_user(str(i), n) for i, n in [(11, "alice"), (12, "bob"), (13, "carol"), (14, "dave")]
)
ERIN, FRANK, GINA, HANK = (
    fake_user(str(i), n) for i, n in [(15, "erin"), (16, "frank"), (17, "gina"), (18, "hank")]
)
IVAN, JUDY, KIM, LEO = (
    fake_user(str(i), n) for i, n in [(19, "ivan"), (20, "judy"), (21, "kim"), (22, "leo")]
)
MIA, NED, OLGA = (fake_user(str(i), n) for i, n in [(23, "mia"), (24, "ned"), (25, "olga")])
MEE6 = fake_user("159985870458322944", "MEE6", bot=True)

FOX = "a red fox in the snow, by Ivan Shishkin"
NEON_TEXT = 'a "neon" 猫 🐱 city at night — «ночь»'  # quotes (escaped in the request), CJK, emoji, Cyrillic


def build_channel_a() -> tuple[FakeChannel, dict[str, tuple]]:
    """One busy channel: every rule of the interaction, users interleaved. Returns expectations."""
    ch = FakeChannel("1003001", "dreambot-1")
    expect: dict[str, tuple] = {}

    # alice: 4 images with a seed list; she picks seed 102 by a new request -> index 2.
    r = ch.request(ALICE, FOX, "-n 4 -S 100 -C 7.5 -s 50 -A k_lms -W 512 -H 512")
    ch.message(BOB, "what sampler is best for portraits?")
    # another bot answers the request without images: the request stays pending
    ch.message(MEE6, "Please be patient, the queue is long", reply_to=r)
    g_alice = ch.generation(r, [100, 101, 102, 103])
    # bob: a 2-cell grid; escaped quotes and any script in the prompt; picks seed 8 -> index 1
    r = ch.request(BOB, NEON_TEXT, "-n 2 -g")
    ch.message(CAROL, "lol nice fox :fox:")
    ch.request(ALICE, FOX, "-S 102")  # alice's choice
    g_bob = ch.generation(r, [7, 8], grid=True)
    ch.generation(ch.messages[-2], [102], images=1)  # alice's refinement (single image)
    ch.request(BOB, NEON_TEXT, "-S 8 -n 1")
    expect[g_alice["id"]] = (FOX, 4, 2, ALICE)
    expect[g_bob["id"]] = (NEON_TEXT, 2, 1, BOB)

    # carol: seeds as one command per image; she replies to the bot with the file of image 3
    r = ch.request(CAROL, "portrait of a knight, oil on canvas", "-n 4")
    g = ch.generation(r, [5551, 5552, 5553, 5554], seeds_style="commands")
    ch.message(CAROL, "this one!", attachments=[dict(g["attachments"][3], id="999")], reply_to=g)
    expect[g["id"]] = ("portrait of a knight, oil on canvas", 4, 3, CAROL)

    # dave: replies with the URL of image 1, in its media.discordapp.net variant with a query
    r = ch.request(DAVE, "isometric cozy cabin", "-n 3")
    g = ch.generation(r, [1, 2, 3])
    url = g["attachments"][1]["url"].replace("cdn.discordapp.com", "media.discordapp.net") + "?width=256"
    ch.message(DAVE, f"going with {url}", reply_to=g)
    expect[g["id"]] = ("isometric cozy cabin", 3, 1, DAVE)

    # erin: a request carrying an input image -> image-conditioned, dropped
    r = ch.request(ERIN, "make it cyberpunk", "-n 4 -S 9", attachments=[ch.attachment("my_photo.jpg")])
    g = ch.generation(r, [9, 10, 11, 12])
    ch.request(ERIN, "make it cyberpunk", "-S 11")
    # frank: an init-image flag -> image-conditioned, dropped
    r = ch.request(FRANK, "a castle", "-n 2 -I https://example.com/castle.png")
    ch.generation(r, [3, 4])

    # gina: one NSFW image of 4 is dropped; she picks seed 43 -> index 1 among the 3 kept
    r = ch.request(GINA, "a beach at sunset", "-n 4")
    g = ch.generation(r, [41, 42, 43, 44], nsfw=[1])
    ch.request(GINA, "a beach at sunset", "-S 43")
    expect[g["id"]] = ("a beach at sunset", 3, 1, GINA)
    # hank: picks the spoilered image -> skipped
    r = ch.request(HANK, "a statue in a park", "-n 2")
    g = ch.generation(r, [61, 62], nsfw=[0])
    ch.request(HANK, "a statue in a park", "-S 61")  # would be "fewer than 2 images" anyway

    # ivan: asked 4, got 3 images and 3 seeds: kept (n >= 2); picks 72 -> index 1
    r = ch.request(IVAN, "a lighthouse in a storm", "-n 4")
    g = ch.generation(r, [71, 72, 73])
    ch.request(IVAN, "a lighthouse in a storm", "-S 72")
    expect[g["id"]] = ("a lighthouse in a storm", 3, 1, IVAN)
    # judy: asked 4, got 1 image -> single image, nothing to choose among
    r = ch.request(JUDY, "a bowl of ramen", "-n 4")
    ch.generation(r, [81], images=1)

    # kim: chooses two different images -> ambiguous
    r = ch.request(KIM, "a dragon made of glass", "-n 4")
    ch.generation(r, [91, 92, 93, 94])
    ch.request(KIM, "a dragon made of glass", "-S 92")
    ch.request(KIM, "a dragon made of glass", "-S 94")
    # leo: never chooses
    r = ch.request(LEO, "an owl librarian", "-n 2")
    ch.generation(r, [21, 22])

    # mia: a 2x2 grid, picks the 4th seed -> cell 3 (row-major)
    r = ch.request(MIA, "a tiny robot gardener", "-n 4 -g -S 300")
    g = ch.generation(r, [300, 301, 302, 303], grid=True)
    ch.request(MIA, "a tiny robot gardener", "-S 303")
    expect[g["id"]] = ("a tiny robot gardener", 4, 3, MIA)
    # ned: replies with the grid image itself: does not identify one cell
    r = ch.request(NED, "a steampunk airship", "-n 4 -g")
    g = ch.generation(r, [401, 402, 403, 404], grid=True)
    ch.message(NED, g["attachments"][0]["url"], reply_to=g)
    # olga: repeats her request exactly (same seed, same count) -> not a choice
    r = ch.request(OLGA, "a field of lavender", "-n 2 -S 500")
    ch.generation(r, [500, 501])
    ch.request(OLGA, "a field of lavender", "-n 2 -S 500")

    # system messages, kinds the exporter does not name, kinds no one knows, other bots' images
    ch.message(ALICE, "", kind="GuildMemberJoin")
    ch.message(MEE6, "", kind="20")
    ch.message(BOB, "boost!", kind="GuildBoostTier9000")
    ch.message(MEE6, "GG alice, you reached level 3!", attachments=[ch.attachment("levelup.png")])
    return ch, expect


def _records_by_generation(out: Path) -> dict[str, tuple]:
    ds = load_dataset(out)
    got = {}
    for rec in ds:
        assert rec.source == "discord" and rec.split is None
        got[rec.meta["generation_id"]] = (rec.prompt, len(rec.images), rec.chosen, rec.user)
    return got


def _expected(expect: dict[str, tuple]) -> dict[str, tuple]:
    return {k: (p, n, c, hash_user(u["id"])) for k, (p, n, c, u) in expect.items()}


def test_channel_choices_and_skip_reasons(tmp_path):
    ch, expect = build_channel_a()
    export = ch.write(tmp_path / "dreambot-1.json")
    report = from_discord([export], tmp_path / "out", copy_media=False)
    assert _records_by_generation(tmp_path / "out") == _expected(expect)
    skipped = report.skipped
    assert skipped["image-conditioned request"] == 2
    assert skipped["fewer than 2 images after dropping NSFW ones"] == 1  # hank
    assert skipped["single image"] >= 2  # judy, and the refinements asked with -n 1
    assert skipped["several different images chosen"] == 1  # kim
    assert skipped["no choice made"] == 2  # leo, and olga (whose repeat chose nothing)
    assert skipped["reply names the grid, not one cell"] == 1  # ned
    assert skipped["repeated request (same seed and count)"] == 1  # olga
    assert report.ignored_messages["system messages"] == 1
    # kinds the exporter does not name are read like any message by their content, and counted
    assert report.unknown_types == {"20": 1, "GuildBoostTier9000": 1}
    assert report.choices == len(expect) and report.errors == []
    assert read_mining_report(tmp_path / "out").choices == len(expect)


def test_record_contents(tmp_path):
    ch, _ = build_channel_a()
    from_discord([ch.write(tmp_path / "e.json")], tmp_path / "out", copy_media=False)
    recs = {r.prompt: r for r in load_dataset(tmp_path / "out")}
    fox = recs[FOX]
    assert fox.images[2].endswith("/102.png") and fox.images[0].startswith("https://cdn.discordapp.com/")
    assert fox.meta["seeds"] == [100, 101, 102, 103] and fox.meta["choice_by"] == "seed"
    assert fox.meta["params"] == {
        "cfg_scale": 7.5,
        "steps": 50,
        "sampler": "k_lms",
        "width": 512,
        "height": 512,
    }
    assert fox.meta["channel"] == "1003001"
    neon = recs[NEON_TEXT]
    assert neon.images[1].endswith("#grid=2x1&cell=1")
    gina = recs["a beach at sunset"]
    assert [Path(u).name for u in gina.images] == ["41.png", "43.png", "44.png"]
    assert recs["portrait of a knight, oil on canvas"].meta["choice_by"] == "reply"


def test_choice_by_another_user_is_not_the_requesters(tmp_path):
    ch = FakeChannel("77", "dreambot-3")
    r = ch.request(ALICE, "a blue whale", "-n 2")
    g = ch.generation(r, [1, 2])
    ch.message(BOB, "this one is better", attachments=[g["attachments"][0]], reply_to=g)
    report = from_discord([ch.write(tmp_path / "e.json")], tmp_path / "out", copy_media=False)
    assert report.choices == 0
    assert report.skipped["choice by a user other than the requester"] == 1


def test_choices_outside_the_window_are_not_linked(tmp_path):
    ch = FakeChannel("78", "dreambot-4")
    r = ch.request(ALICE, "a blue whale", "-n 2")
    ch.generation(r, [1, 2])
    ch.wait(3 * 3600)
    for i in range(300):  # enough messages for the miner to sweep its state
        ch.message(BOB, f"chatter {i}")
    ch.request(ALICE, "a blue whale", "-S 2")
    report = from_discord(
        [ch.write(tmp_path / "e.json")], tmp_path / "out", copy_media=False, window_minutes=60
    )
    assert report.choices == 0 and report.skipped["no choice made"] == 1


def test_overlapping_exports_count_each_message_once(tmp_path):
    ch = FakeChannel("2002", "dreambot-2")
    expect = {}
    for i, user in enumerate([ALICE, BOB, CAROL, DAVE]):
        r = ch.request(user, f"prompt number {i}", "-n 2")
        ch.message(ERIN, f"chatter {i}")
        g = ch.generation(r, [10 * i, 10 * i + 1])
        ch.request(user, f"prompt number {i}", f"-S {10 * i + 1}")
        expect[g["id"]] = (f"prompt number {i}", 2, 1, user)
    msgs = ch.messages
    early = ch.write(tmp_path / "part1.json", msgs[: len(msgs) * 2 // 3])
    late = ch.write(tmp_path / "part2.json", msgs[len(msgs) // 3 :])
    # given newest first, and the early one twice: still each message once
    report = from_discord([late, early, early], tmp_path / "out", copy_media=False)
    assert _records_by_generation(tmp_path / "out") == _expected(expect)
    assert report.messages == len(msgs)
    assert report.duplicate_messages == len(msgs) * 2 // 3 + (len(msgs) * 2 // 3 - len(msgs) // 3)


def test_legacy_export_without_replies_links_by_prompt(tmp_path):
    ch = FakeChannel("3003", "dreambot-old")
    r = ch.request(ALICE, "an astronaut riding a horse", "-n 2")
    ch.request(BOB, "a bowl of fruit", "-n 2")
    g = ch.generation(r, [5, 6], reference=False)
    ch.request(ALICE, "an astronaut riding a horse", "-S 5")
    export = ch.write(tmp_path / "old.json", legacy=True)
    assert "reference" not in json.loads(export.read_text())["messages"][2]
    from_discord([export], tmp_path / "out", copy_media=False)
    got = _records_by_generation(tmp_path / "out")
    assert got == {g["id"]: ("an astronaut riding a horse", 2, 0, hash_user("11"))}


def test_several_channels_and_user_hash_salt(tmp_path):
    a, expect_a = build_channel_a()
    b = FakeChannel("2002", "dreambot-2")
    r = b.request(ALICE, FOX, "-n 2")  # same user and prompt as in channel A: separate state
    g = b.generation(r, [1, 2])
    b.request(ALICE, FOX, "-S 1")
    exports = [a.write(tmp_path / "a.json"), b.write(tmp_path / "b.json")]
    from_discord(exports, tmp_path / "out", copy_media=False, salt="s3cret")
    ds = load_dataset(tmp_path / "out")
    assert len(ds) == len(expect_a) + 1
    alice = hash_user("11", "s3cret")
    assert alice != hash_user("11") and sum(r.user == alice for r in ds) == 2
    assert {r.meta["generation_id"] for r in ds} >= {g["id"]}


def test_slash_command_interaction(tmp_path):
    ch = FakeChannel("4004", "dreambot-slash")
    atts = [ch.attachment("1.png"), ch.attachment("2.png")]
    g = ch.message(
        DREAMBOT,
        '!dream "a koi pond" -n 2\nThe seeds for each individual image are [1, 2]',
        attachments=atts,
        kind="Default",
        interaction={"id": "55", "name": "dream", "user": ALICE},
    )
    ch.request(ALICE, "a koi pond", "-S 2")
    from_discord([ch.write(tmp_path / "e.json")], tmp_path / "out", copy_media=False)
    assert _records_by_generation(tmp_path / "out") == {g["id"]: ("a koi pond", 2, 1, hash_user("11"))}


# ----- bad input -------------------------------------------------------------------------------


def _two_choice_channel(channel_id: str) -> FakeChannel:
    ch = FakeChannel(channel_id, f"ch-{channel_id}")
    for i in range(2):
        r = ch.request(ALICE, f"good prompt {channel_id} {i}", "-n 2")
        ch.generation(r, [1, 2])
        ch.request(ALICE, f"good prompt {channel_id} {i}", "-S 2")
    for i in range(20):
        ch.message(BOB, f"more chatter {i} " + "x" * 200)
    return ch


def test_truncated_export_keeps_what_was_mined(tmp_path):
    good = _two_choice_channel("1").write(tmp_path / "good.json")
    ch = _two_choice_channel("2")
    text = ch.write(tmp_path / "cut.json").read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(text[: len(text) - 3000])
    with pytest.raises(MiningError) as info:
        from_discord([good, cut], tmp_path / "out", copy_media=False)
    msg = str(info.value)
    assert "cut.json" in msg and "truncated JSON" in msg and "after message" in msg
    last_id = str(info.value.report.errors[0]).split("after message ")[1].rstrip(")")
    assert last_id in {m["id"] for m in ch.messages}
    # both files' choices were made before the cut: all four are saved
    assert len(load_dataset(tmp_path / "out")) == 4
    assert read_mining_report(tmp_path / "out").errors == info.value.report.errors


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<!DOCTYPE html><html><body>export</body></html>", "HTML"),
        (b"id,content\n1,hello\n", "not a JSON object"),
        (b'{"guild": {"id": "1"}, "channel": {"id": "2"}, "items": []}', "no 'messages' array"),
        (b"[]", "JSON array"),
        (b"", "empty file"),
    ],
)
def test_other_formats_are_named(tmp_path, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    good = _two_choice_channel("1").write(tmp_path / "good.json")
    with pytest.raises(MiningError, match=expected) as info:
        from_discord([bad, good], tmp_path / "out", copy_media=False)
    assert "bad.json" in str(info.value)
    assert len(load_dataset(tmp_path / "out")) == 2


def test_malformed_json_names_file_and_message(tmp_path):
    ch = _two_choice_channel("5")
    path = ch.write(tmp_path / "broken.json")
    text = path.read_text(encoding="utf-8")
    target = ch.messages[10]["content"]
    path.write_text(text.replace(json.dumps(target), target[:5] + "}", 1), encoding="utf-8")
    with pytest.raises(DiscordExportError, match="malformed JSON") as info:
        list(iter_messages(path))
    assert info.value.after_message == ch.messages[9]["id"] and "broken.json" in str(info.value)


def test_invalid_utf8_names_file(tmp_path):
    ch = _two_choice_channel("6")
    path = ch.write(tmp_path / "latin1.json")
    data = path.read_bytes().replace(b"more chatter 15", b"more chatter \xe9\xff", 1)
    path.write_bytes(data)
    report_out = tmp_path / "out"
    with pytest.raises(MiningError, match="invalid UTF-8") as info:
        from_discord([path], report_out, copy_media=False)
    assert "latin1.json" in str(info.value)
    assert len(load_dataset(report_out)) == 2  # both choices came before the bad bytes


def test_header_and_streaming_reader(tmp_path):
    ch = _two_choice_channel("7")
    path = ch.write(tmp_path / "e.json")
    header = read_header(path)
    assert header.channel["name"] == "ch-7" and header.guild["name"] == "Stable Foundation"
    assert header.first_message_id == ch.messages[0]["id"]
    read = []
    ids = [m["id"] for m in iter_messages(path, on_read=read.append)]
    assert ids == [m["id"] for m in ch.messages]
    assert sum(read) == path.stat().st_size


def test_missing_fields_are_tolerated(tmp_path):
    ch = FakeChannel("8", "minimal")
    r = ch.request(ALICE, "a minimal prompt", "-n 2")
    g = ch.generation(r, [1, 2])
    ch.request(ALICE, "a minimal prompt", "-S 1")
    keep = {"id", "content", "author", "attachments", "reference"}
    msgs = [{k: v for k, v in m.items() if k in keep} for m in ch.messages]
    for m in msgs:
        m["author"] = {k: v for k, v in m["author"].items() if k in ("id", "isBot")}
    path = tmp_path / "minimal.json"
    path.write_text(json.dumps({"messages": msgs}), encoding="utf-8")
    from_discord([path], tmp_path / "out", copy_media=False)
    assert _records_by_generation(tmp_path / "out") == {g["id"]: ("a minimal prompt", 2, 0, hash_user("11"))}


# ----- real-world shapes the exporter writes ---------------------------------------------------


def test_slash_response_with_a_type_the_exporter_does_not_name(tmp_path):
    """Discord type 20 (a slash-command response) is written as "20": read it by its content."""
    ch = FakeChannel("5005", "dreambot-20")
    r = ch.request(ALICE, "a tin robot", "-n 2")
    g = ch.message(
        DREAMBOT,
        "The seeds for each individual image are [900, 901]",
        attachments=[ch.attachment("900.png"), ch.attachment("901.png")],
        reply_to=r,
        kind="20",
        interaction={"id": "77", "name": "dream", "user": ALICE},
    )
    ch.request(ALICE, "a tin robot", "-S 901")
    report = from_discord([ch.write(tmp_path / "e.json")], tmp_path / "out", copy_media=False)
    assert _records_by_generation(tmp_path / "out") == {g["id"]: ("a tin robot", 2, 1, hash_user("11"))}
    assert report.choices == 1 and report.unknown_types == {"20": 1}
    assert read_mining_report(tmp_path / "out").unknown_types == {"20": 1}


def test_per_image_commands_written_inline(tmp_path):
    """The bot may write one backticked command per image on one line, after a header."""
    ch = FakeChannel("6006", "dreambot-inline")
    r = ch.request(BOB, "P", "-n 3")
    g = ch.message(
        DREAMBOT,
        '`!dream "P" -n 3` The commands for each individual image are '
        '`!dream "P" -S 11` `!dream "P" -S 12` `!dream "P" -S 13`',
        attachments=[ch.attachment(f"{k}.png") for k in (11, 12, 13)],
        reply_to=r,
    )
    ch.request(BOB, "P", "-S 12")
    report = from_discord([ch.write(tmp_path / "e.json")], tmp_path / "out", copy_media=False)
    assert _records_by_generation(tmp_path / "out") == {g["id"]: ("P", 3, 1, hash_user("12"))}
    assert load_dataset(tmp_path / "out")[0].meta["seeds"] == [11, 12, 13]
    assert report.skipped == {}


def _media_channel(tmp_path: Path, urls: list[str]) -> tuple[FakeChannel, dict]:
    """A two-image generation (chosen: the second) whose attachments point at local files."""
    ch = FakeChannel("7007", "dreambot-media")
    r = ch.request(CAROL, "a paper boat", "-n 2")
    g = ch.generation(r, [3, 4])
    for att, url in zip(g["attachments"], urls, strict=True):
        att["url"] = url
    ch.request(CAROL, "a paper boat", "-S 4")
    return ch, g


def test_media_export_made_on_windows(tmp_path):
    """--media on Windows writes `room.json_Files\\name.png` (and may percent-encode names)."""
    from prefalign.testing.images import draw_shape

    files = tmp_path / "room.json_Files"
    files.mkdir()
    draw_shape("circle", "red", size=16).save(files / "boat-3F2A.png")
    draw_shape("square", "green", size=16).save(files / "boat #2-9C1B.png")
    ch, _ = _media_channel(
        tmp_path, ["room.json_Files\\boat-3F2A.png", "room.json_Files\\boat%20%232-9C1B.png"]
    )
    report = from_discord([ch.write(tmp_path / "room.json")], tmp_path / "out")
    ds = load_dataset(tmp_path / "out")
    assert report.missing_media == {} and report.errors == []
    (rec,) = ds.records
    assert rec.chosen == 1 and all(i.startswith("images/") for i in rec.images)
    assert Path(ds.image_path(rec.images[1])).read_bytes() == (files / "boat #2-9C1B.png").read_bytes()


def test_missing_media_fail_the_run_with_counts(tmp_path):
    from prefalign.testing.images import draw_shape

    files = tmp_path / "room.json_Files"
    files.mkdir()
    draw_shape("circle", "red", size=16).save(files / "a.png")
    ch, _ = _media_channel(tmp_path, ["room.json_Files\\a.png", "room.json_Files\\gone.png"])
    export = ch.write(tmp_path / "room.json")
    with pytest.raises(MiningError, match=r"1 local image file.*local file not found: 1.*--allow-missing"):
        from_discord([export], tmp_path / "out")
    assert read_mining_report(tmp_path / "out").missing_media == {"local file not found": 1}
    report = from_discord([export], tmp_path / "out2", allow_missing=True)
    assert report.errors == [] and report.missing_media == {"local file not found": 1}
    # the command line exits non-zero and names the reason, unless --allow-missing
    from prefalign.cli.main import main

    assert main(["data", "from-discord", str(export), "--out", str(tmp_path / "o3"), "--no-progress"]) == 2
    args = [
        "data",
        "from-discord",
        str(export),
        "--out",
        str(tmp_path / "o4"),
        "--no-progress",
        "--allow-missing",
    ]
    assert main(args) == 0
