"""Every known scorer name, when its weights are absent offline, says where to get them and what to run."""

from __future__ import annotations

import pytest

from prefalign.scoring.catalog import FAMILIES
from prefalign.scoring.load import CONVERTED_MODELS, HUB_MODELS, RELEASES, ScorerLoadError, load_scorer


@pytest.mark.parametrize("name", sorted(HUB_MODELS))
def test_hub_names_offline_say_where_to_download(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ScorerLoadError) as info:
        load_scorer(name, device="cpu")
    message = str(info.value)
    hub_id = HUB_MODELS[name][0]
    assert "\n" not in message
    assert message.startswith(f"{name}: {hub_id} is not in the Hugging Face cache")
    assert f"hf download {hub_id} --local-dir models/{name}" in message
    assert f"--model models/{name}" in message and "docs/models.md" in message


@pytest.mark.parametrize("name", sorted(CONVERTED_MODELS))
def test_converted_names_say_which_release_and_which_command(name, monkeypatch, tmp_path):
    monkeypatch.setenv("PREFALIGN_HOME", str(tmp_path))
    with pytest.raises(ScorerLoadError) as info:
        load_scorer(name, device="cpu")
    message = str(info.value)
    release, family = CONVERTED_MODELS[name]
    family, _, options = family.partition(" ")
    assert RELEASES[name] in message and f"Download {release}" in message
    assert f"`prefalign convert --from {family} {release} --out {tmp_path / 'models' / name}" in message
    assert options in message
    assert ("--tokenizer" in message) == (name not in ("aesthetic", "hpsv3"))


@pytest.mark.parametrize("name", sorted(CONVERTED_MODELS))
def test_convert_hint_names_the_family_of_the_name(name, tmp_path):
    """hps-v2.1's hint said `--from hps-v2`; the family is the name itself wherever one exists."""
    from prefalign.cli.convert import register  # noqa: F401  (the command the hint names exists)
    from prefalign.scoring.load import convert_command

    family = convert_command(name, tmp_path / name).split()[3]
    assert family in FAMILIES
    if name in FAMILIES:
        assert family == name


@pytest.mark.parametrize("target", ["models/hps-v1", "models/my-scorer", "openai/clip-vit-large-patch14"])
def test_missing_path_says_so_before_the_hub(target, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFALIGN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ScorerLoadError) as info:
        load_scorer(target, device="cpu")
    message = str(info.value)
    assert "\n" not in message and "couldn't connect" not in message
    assert message.startswith(
        f"{target}: no such directory, and not a hub id found in the local cache (offline)"
    )
    if target == "models/hps-v1":
        assert "`prefalign convert --from hps-v1 hpc.pt --out models/hps-v1`" in message
    else:
        assert f"hf download {target} --local-dir models/{target.split('/')[1]}" in message


def test_train_scorer_base_missing_says_so(monkeypatch, tmp_path, capsys):
    """`train scorer --base` loads through load_scorer: the same one line, with the download hint."""
    from prefalign.cli.main import main
    from prefalign.testing.images import make_choice_dataset

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    data = make_choice_dataset(tmp_path / "choices", 4, size=16)
    for base in ("models/hps-v1", "openai/clip-vit-large-patch14"):
        args = ["train", "scorer", "--data", str(data), "--base", base, "--output_dir", str(tmp_path / "out")]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{base}: no such directory, and not a hub id found in the local cache (offline)" in err, err
        assert ("hf download" in err) == (base != "models/hps-v1"), err
        assert not (tmp_path / "out").exists()
