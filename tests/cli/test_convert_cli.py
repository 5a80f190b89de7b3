"""`prefalign convert` options beyond the equivalence tests: overrides and clean errors."""

from prefalign.cli.main import main
from prefalign.scoring import load_scorer


def test_kind_and_preprocess_overrides(tiny_clip_dir, tmp_path, capsys):
    out = tmp_path / "m"
    args = ["convert", "--from", "pickscore", str(tiny_clip_dir), "--out", str(out)]
    assert main([*args, "--kind", "hps", "--preprocess", "pad"]) == 0
    assert "kind hps, preprocessing pad 32px" in capsys.readouterr().out
    scorer = load_scorer(out, device="cpu")
    assert scorer.kind == "hps" and scorer.preprocess.mode == "pad"


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"definitely not a checkpoint")
    assert main(["convert", "--from", "hps-v1", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prefalign convert: error:") and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    assert main(["convert", "--from", "aesthetic", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "needs --base" in capsys.readouterr().err
