"""Shared fixtures. Tests that need ALFWorld games use the prepared data dir.

The data must be prepared before the suite runs (``mpr data prepare --from ...``,
as .ci/run does); a missing data dir fails the tests that need it, loudly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
# A fresh on-disk translation cache per test session: tests see the same cold start everywhere.
os.environ["MPR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mpr-test-cache-")
sys.path.insert(0, str(Path(__file__).parent))  # toygames, importable by spawned workers too

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = Path(os.environ.get("MPR_ALFWORLD_ARCHIVE", REPO.parent / "shared/alfworld/alfworld-json_2.1.1-games.tar.xz"))


@pytest.fixture(scope="session")
def games_root() -> Path:
    from mpr.data import EXPECTED_COUNTS, count_games, games_root as root_of

    root = root_of()
    if not root.is_dir() or count_games(root) != EXPECTED_COUNTS:
        pytest.fail(f"ALFWorld games missing or incomplete at {root}: run `mpr data prepare --from {ARCHIVE}`")
    return root


@pytest.fixture(scope="session")
def valid_unseen(games_root):
    """Six valid_unseen tasks, one per task type."""
    from mpr.data import list_tasks

    return list_tasks("valid_unseen", limit=6)
