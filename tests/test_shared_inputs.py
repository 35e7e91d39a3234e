"""Tests that read ../shared skip on a checkout without it, and fail in CI (QAFE_BENCH_REQUIRE_SHARED)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _media import REQUIRE_SHARED, skip_or_fail_without  # noqa: E402


def test_a_missing_shared_input_fails_where_required_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv(REQUIRE_SHARED, "1")
    with pytest.raises(pytest.fail.Exception, match="CI needs ../shared beside the checkout"):
        skip_or_fail_without(tmp_path / "absent", "real face videos")
    monkeypatch.delenv(REQUIRE_SHARED)
    with pytest.raises(pytest.skip.Exception, match="real face videos not found at"):
        skip_or_fail_without(tmp_path / "absent", "real face videos")
    skip_or_fail_without(tmp_path, "a folder that exists")  # returns: nothing to skip
