"""Shared fixtures: tiny random models and a tiny tokenizer built in code; never the network."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: tests must never reach a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``real_weights`` unless PREFALIGN_REAL_WEIGHTS names a directory."""
    weights = os.environ.get("PREFALIGN_REAL_WEIGHTS")
    if weights and Path(weights).is_dir():
        return
    skip = pytest.mark.skip(reason="needs real weights: set PREFALIGN_REAL_WEIGHTS=DIR")
    for item in items:
        if "real_weights" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A directory with a tiny CLIP BPE vocabulary: vocab.json and merges.txt."""
    from prefalign.testing import write_tiny_tokenizer_files

    return write_tiny_tokenizer_files(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A Hugging Face CLIP directory (config, safetensors, tokenizer) of a tiny random model."""
    from prefalign.testing import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


# Real components (issue 17): the summary names how many PostgreSQL and browser tests passed, so a
# CI log shows them run, not skipped (with -q, passing tests are otherwise only dots).
_REAL_COMPONENTS = {"PostgreSQL": "[postgresql]", "browser (chromium)": "tests/annotate/test_browser.py"}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = []
    for name, marker in _REAL_COMPONENTS.items():
        reports = [r for key in ("passed", "failed", "skipped") for r in terminalreporter.stats.get(key, [])]
        mine = [r for r in reports if marker in r.nodeid and r.when in ("call", "setup")]
        if not mine:
            continue
        passed = sum(r.passed and r.when == "call" for r in mine)
        skipped = sum(r.skipped for r in mine)
        counts.append(f"{name}: {passed} passed, {skipped} skipped")
    if counts:
        terminalreporter.write_line("real components: " + "; ".join(counts))
