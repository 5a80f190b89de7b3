"""The score kind is never guessed from a folder's name, and no tokenizer goes unchecked."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from prefalign.cli.main import main
from prefalign.scoring import convert_checkpoint, load_scorer


@pytest.fixture
def hf_dirs(tiny_clip_dir, tmp_path):
    """The same plain HF CLIP weights in a neutral folder and in one named like PickScore."""
    neutral = shutil.copytree(tiny_clip_dir, tmp_path / "ckpt")
    named = shutil.copytree(tiny_clip_dir, tmp_path / "PickScore_v1")
    return neutral, named


def _model_only(tiny_clip_dir, directory):
    directory.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_clip_dir / name, directory / name)
    return directory


def test_plain_clip_directory_is_clip_whatever_its_name(hf_dirs, images):
    neutral, named = hf_dirs
    plain = load_scorer(neutral, device="cpu")
    assert (plain.kind, plain.kind_source) == ("clip", "default for a CLIP model without prefalign.json")
    with pytest.warns(UserWarning, match=r"scored as plain CLIP cosine .* name suggests pickscore"):
        guessed = load_scorer(named, device="cpu")
    assert guessed.kind == "clip"  # was pickscore, silently, because of the folder's name
    torch.testing.assert_close(guessed.score(images, "a red cat"), plain.score(images, "a red cat"))


def test_kind_from_prefix_or_argument(hf_dirs, images):
    neutral, named = hf_dirs
    clip = load_scorer(neutral, device="cpu").score(images, "a red cat")
    for scorer in (load_scorer(f"pickscore:{neutral}", device="cpu"), load_scorer(neutral, kind="pickscore")):
        assert (scorer.kind, scorer.kind_source) == ("pickscore", "given (KIND: prefix or --kind)")
        scale = scorer.model.logit_scale.exp()
        torch.testing.assert_close(scorer.score(images, "a red cat"), scale * clip)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit kind does not warn about the name
        load_scorer(named, kind="pickscore", device="cpu")


def test_score_command_says_which_kind(hf_dirs, images, tmp_path, capsys):
    neutral, _ = hf_dirs
    images[0].save(tmp_path / "a.png")
    assert main(["score", str(tmp_path / "a.png"), "-p", "a cat", "-m", str(neutral)]) == 0
    assert "kind clip = cos(i, t)" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "a.png"), "-p", "a cat", "-m", str(neutral), "--kind", "hps"]) == 0
    assert "kind hps = 100 * cos(i, t)" in capsys.readouterr().err


def test_model_without_tokenizer_files_is_refused(tiny_clip_dir, tiny_tokenizer_dir, tmp_path, capsys):
    from prefalign.scoring.tokenizer_check import TokenizerError

    bare = _model_only(tiny_clip_dir, tmp_path / "PickScore_v1")
    with pytest.raises(TokenizerError, match=r"PickScore_v1: no tokenizer files.*--tokenizer"):
        load_scorer(bare, device="cpu")
    # convert too (it wrote a 2-token vocabulary before), and nothing is written
    code = main(["convert", "--from", "pickscore", str(bare), "--out", str(tmp_path / "out")])
    assert code == 2 and "--tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # with the tokenizer named, the prompts are told apart again
    scorer = load_scorer(bare, tokenizer=tiny_tokenizer_dir, kind="pickscore", device="cpu")
    enc = scorer.encode_text(["a red cat", "two blue dogs"])
    assert not torch.allclose(enc[0], enc[1])
    out = convert_checkpoint("pickscore", bare, tmp_path / "out", tokenizer=tiny_tokenizer_dir)
    assert len(load_scorer(out, device="cpu").tokenizer) == scorer.model.config.text_config.vocab_size


def test_tokenizer_of_another_vocabulary_is_refused(tmp_path, tiny_tokenizer_dir):
    from prefalign.scoring.tokenizer_check import TokenizerError
    from prefalign.testing.clip import save_tiny_clip

    bigger = save_tiny_clip(tmp_path / "big", vocab_size=1000)
    with pytest.raises(TokenizerError, match=r"tokenizer has \d+ tokens but the model's text tower has 1000"):
        load_scorer(bigger, device="cpu")


def test_name_warning_says_exactly_what_to_type(hf_dirs, images, tiny_clip_dir, tiny_tokenizer_dir, tmp_path):
    """PickScore by path was scored as CLIP; the warning's command gives PickScore's score."""
    import re

    _, named = hf_dirs
    with pytest.warns(UserWarning) as record:
        load_scorer(named, device="cpu")
    message = str(record[0].message)
    model = re.search(r"give `--model (\S+)`", message)
    assert model is not None, message
    assert model.group(1) == f"pickscore:{named}"
    scorer = load_scorer(model.group(1), device="cpu")
    plain = load_scorer(tmp_path / "ckpt", device="cpu")
    assert scorer.kind == "pickscore"
    torch.testing.assert_close(
        scorer.score(images, "a red cat"), scorer.model.logit_scale.exp() * plain.score(images, "a red cat")
    )
    convert = re.search(r"`prefalign convert --from (\S+) (\S+) --out (\S+)`", message)
    assert convert is not None and convert.group(1) == "pickscore", message
    converted = convert_checkpoint(convert.group(1), convert.group(2), convert.group(3))
    again = load_scorer(converted, device="cpu")
    assert again.kind == "pickscore"
    torch.testing.assert_close(again.score(images, "a red cat"), scorer.score(images, "a red cat"))

    only_model = _model_only(tiny_clip_dir, tmp_path / "pickscore")  # PickScore_v1 ships no tokenizer
    with pytest.warns(UserWarning) as record:
        load_scorer(only_model, device="cpu", tokenizer=tiny_tokenizer_dir)
    assert f"--model pickscore:{only_model} --tokenizer laion/CLIP-ViT-H-14" in str(record[0].message)
