"""Fixtures for the interop tests: a hand-built LSTMVis project (see lstmvis_project.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lstmvis_project import write_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The tiny LSTMVis project folder, freshly written."""
    return write_project(tmp_path / "tiny")
