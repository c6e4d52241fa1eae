"""Shared fixtures. Tests that need ALFWorld games use the prepared data dir.

The data must be prepared before the suite runs (``mpr data prepare --from ...``,
as .ci/run does); a missing data dir fails the tests that need it, loudly.

Tiers: a test that needs the games is marked ``games``, one that needs a tiny, trained or
pretrained model ``models`` — by hand, or here from the fixtures it uses (``GAME_FIXTURES``,
``MODEL_FIXTURES``). ``pytest -m "not games and not models"`` runs the rest with no data at all.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# A fresh on-disk translation cache per test session: tests see the same cold start everywhere.
os.environ["MPR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mpr-test-cache-")
sys.path.insert(0, str(Path(__file__).parent))  # toygames, importable by spawned workers too

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = Path(os.environ.get("MPR_ALFWORLD_ARCHIVE", REPO.parent / "shared/alfworld/alfworld-json_2.1.1-games.tar.xz"))


GAME_FIXTURES = {"games_root", "valid_unseen", "expert_rollouts", "random_rollouts", "tiny_chain"}
MODEL_FIXTURES = {"tiny_model_dir", "tiny_value_dir", "tiny_engine", "tiny_chain"}


def pytest_collection_modifyitems(items):
    """Mark each test by the data its fixtures need (fixturenames holds the whole closure)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & GAME_FIXTURES:
            item.add_marker(pytest.mark.games)
        if used & MODEL_FIXTURES:
            item.add_marker(pytest.mark.models)


@pytest.fixture(scope="session")
def games_root() -> Path:
    from mpr.alfworld.data import EXPECTED_COUNTS, count_games
    from mpr.alfworld.data import games_root as root_of

    root = root_of()
    if not root.is_dir() or count_games(root) != EXPECTED_COUNTS:
        pytest.fail(f"ALFWorld games missing or incomplete at {root}: run `mpr data prepare --from {ARCHIVE}`")
    return root


@pytest.fixture(scope="session")
def valid_unseen(games_root):
    """Six valid_unseen tasks, one per task type."""
    from mpr.alfworld.data import list_tasks

    return list_tasks("valid_unseen", limit=6)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, games_root) -> Path:
    """A tiny from-scratch Llama + tokenizer trained on ALFWorld text (built once per session)."""
    from mpr.alfworld.data import iter_game_files
    from mpr.lm.weights import alfworld_corpus, build_tiny

    texts = alfworld_corpus(iter_game_files(games_root, "valid_train")[:30])
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny", texts=texts, vocab_size=2048, hidden=64,
                      layers=2, heads=4)


@pytest.fixture(scope="session")
def tiny_value_dir(tmp_path_factory, games_root) -> Path:
    from mpr.alfworld.data import iter_game_files
    from mpr.lm.weights import alfworld_corpus, build_tiny

    texts = alfworld_corpus(iter_game_files(games_root, "valid_train")[:30])
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-value", texts=texts, vocab_size=2048, hidden=64,
                      layers=2, heads=4, value_head=True)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from mpr.lm.engine import EngineConfig
    from mpr.lm.hf_engine import HFEngine

    return HFEngine(EngineConfig(model=str(tiny_model_dir), dtype="fp32", threads=1, batch_size=8, max_length=512))


def _rollouts(tmp_path_factory, name, **kw):
    from mpr.training.rollout import RolloutConfig, rollout

    from mpr.alfworld.env import EnvConfig

    out = tmp_path_factory.mktemp("rollouts") / name
    config = RolloutConfig(split="train", limit=3, workers=0, env=EnvConfig(), **kw)
    rollout(config, out, progress=False, echo=lambda _m: None)
    return out


@pytest.fixture(scope="session")
def expert_rollouts(tmp_path_factory, games_root) -> Path:
    """Handcoded-expert demonstrations on 3 train games (one per task type)."""
    return _rollouts(tmp_path_factory, "expert", policy="expert")


@pytest.fixture(scope="session")
def random_rollouts(tmp_path_factory, games_root) -> Path:
    """Random-policy rollouts on the same 3 games, 2 per game, half from walkthrough states: wins and losses."""
    return _rollouts(tmp_path_factory, "random", policy="random", repeats=2, reset_half=0.5, seed=3)


MPR = [sys.executable, "-m", "mpr"]


def mpr(*args, ok=True, env=None):
    """Run the mpr CLI in a subprocess (one torch thread), as a user would; ``env``: more variables."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPR_THREADS": "1", **(env or {})}
    proc = subprocess.run(MPR + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory, games_root):
    """The training chain from the CLI with --preset tiny: expert rollouts R on 4 train games, then
    a PRM P, a world model W and an SFT policy PI trained on them."""
    d = tmp_path_factory.mktemp("chain")
    mpr("rollout", "--policy", "expert", "--split", "train", "--limit", 4, "--out", d / "R", "--workers", 0, "--no-progress")
    mpr("train", "prm", "--rollouts", d / "R", "--out", d / "P", "--preset", "tiny", "--no-progress")
    mpr("train", "world", "--rollouts", d / "R", "--out", d / "W", "--preset", "tiny", "--device", "cpu", "--no-progress")
    mpr("train", "policy", "--sft", "--demos", d / "R", "--out", d / "PI", "--preset", "tiny", "--no-progress")
    return d
