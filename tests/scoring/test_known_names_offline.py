"""Every known scorer name, when its weights are absent offline, says where to get them and what to run."""

from __future__ import annotations

import pytest

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
    assert RELEASES[name] in message and f"Download {release}" in message
    assert f"prefalign convert --from {family} {release} --out {tmp_path / 'models' / name}" in message
    assert ("--tokenizer" in message) == (name not in ("aesthetic", "hpsv3"))
