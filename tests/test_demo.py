"""`prefalign demo` runs offline end to end and writes its report."""

import pyarrow.parquet as pq

from prefalign.cli.main import main


def test_demo_writes_report_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "top-1 accuracy" in report and "random baseline" in report
    assert (
        "| after training |" in report
        and (out / "models" / "tiny-hps-trained" / "training_log.jsonl").exists()
    )
    rows = pq.read_table(out / "scores.parquet").to_pylist()
    assert len(rows) > 24 and all(r["score"] is not None for r in rows)


def test_public_api_names_resolve():
    import prefalign

    for name in prefalign.__all__:
        assert getattr(prefalign, name) is not None, name
