"""The CLI prints a warning as one clean line; library users keep Python's own format."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

from prefalign.testing.images import make_choice_dataset

SRC = Path(__file__).resolve().parents[2] / "src"


def test_deprecated_option_warns_in_one_line(tmp_path: Path) -> None:
    data = make_choice_dataset(tmp_path / "choices", 2, size=16)
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    # --out is the deprecated name of --output_dir; the missing base stops the run right after
    args = ["train", "scorer", "--data", str(data), "--base", "models/none", "--out", str(tmp_path / "o")]
    code = "import sys; from prefalign.cli.main import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    warned = [line for line in lines if line.startswith("FutureWarning: ")]
    assert len(warned) == 1, done.stderr
    assert "'out' is deprecated" in warned[0] and "use 'output_dir'" in warned[0]
    assert not any(".py:" in line or "warnings.warn" in line for line in lines), done.stderr


def test_library_warning_stays_a_future_warning() -> None:
    from prefalign.train.preference_config import PreferenceConfig
    from prefalign.training.config import upgrade_names

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        upgrade_names(PreferenceConfig, {"out": "x"}, source="test")
    assert [w.category for w in record] == [FutureWarning]
