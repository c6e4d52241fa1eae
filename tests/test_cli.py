"""The command line as a user meets it: real processes, one error line, no tracebacks."""

import json
import shutil
import subprocess
import sys

import pytest


def mpr(*args, check=False):
    proc = subprocess.run([sys.executable, "-m", "mpr", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_commands():
    out = mpr("--help", check=True).stdout
    for cmd in ("data", "eval", "plan", "tasks"):
        assert cmd in out


def test_unknown_task(games_root):
    assert_one_error_line(mpr("plan", "--task", "valid_unseen/no-such-task/trial_0"), "unknown task")


def test_unknown_split_and_agent(games_root):
    assert_one_error_line(mpr("eval", "--split", "test"), "unknown split")
    assert_one_error_line(mpr("eval", "--agent", "oracle", "--limit", "1"), "unknown agent")


def test_missing_data_says_how_to_prepare(tmp_path):
    assert_one_error_line(mpr("eval", "--agent", "random", "--data-dir", str(tmp_path), "--limit", "1"),
                          "mpr data prepare")
    assert_one_error_line(mpr("plan", "--data-dir", str(tmp_path), "--task", "valid_unseen/x/y"), "mpr data prepare")


def test_corrupt_game_file(games_root, valid_unseen, tmp_path):
    src = valid_unseen[0].trial_dir
    dst = tmp_path / "valid_unseen" / src.parent.name / src.name
    shutil.copytree(src, dst)
    game = dst / "game.tw-pddl"
    game.write_text(game.read_text()[:5000])
    assert_one_error_line(mpr("plan", "--agent", "random", "--task", str(game)), "corrupt game file")


def test_prepare_from_missing_archive(tmp_path):
    assert_one_error_line(mpr("data", "prepare", "--from", str(tmp_path / "x.tar.xz"), "--data-dir", str(tmp_path)),
                          "not found")


def test_plan_prints_a_won_walkthrough(valid_unseen):
    out = mpr("plan", "--task", valid_unseen[0].id, "--agent", "walkthrough", check=True).stdout
    assert "goal:" in out and " 1. > " in out and "[won]" in out and "WON after" in out


def test_eval_writes_records_and_summary(valid_unseen, tmp_path):
    out = tmp_path / "wt.jsonl"
    proc = mpr("eval", "--agent", "walkthrough", "--limit", "3", "--workers", "2", "--json", str(out),
               "--no-progress", check=True)
    assert any(line.startswith("all") and "100.0%" in line for line in proc.stdout.splitlines())
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["summary"]["all"] == {**summary["summary"]["all"], "episodes": 3, "wins": 3, "success_rate": 1.0}
    assert summary["config"]["agent"] == "walkthrough"
    episodes = [json.loads(line) for line in out.read_text().splitlines()][1:]
    assert len(episodes) == 3 and all(e["won"] and e["turns"] for e in episodes)
    again = mpr("eval", "--agent", "walkthrough", "--limit", "3", "--json", str(out), "--no-progress", check=True)
    assert "3 of 3 episodes already recorded" in again.stdout
    assert len(out.read_text().splitlines()) == 4  # nothing run twice


@pytest.mark.parametrize("flag", ["--limit=0", "--workers=-1", "--max-actions=0"])
def test_bad_numbers_are_one_line(games_root, flag):
    assert_one_error_line(mpr("eval", flag))


def test_llm_agent_runs_and_reports_parse_misses(tiny_model_dir, valid_unseen, tmp_path):
    out = tmp_path / "llm.jsonl"
    proc = mpr("eval", "--agent", "llm", "--model", str(tiny_model_dir), "--policy-mode", "sample", "--limit", "2",
               "--max-actions", "3", "--workers", "0", "--threads", "1", "--json", str(out), "--no-progress",
               check=True)
    assert "policy outputs not matching an admissible action:" in proc.stdout
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["summary"]["all"]["episodes"] == 2 and summary["parsed_now"] == 6
    header = json.loads(out.read_text().splitlines()[0])
    assert header["model"] == str(tiny_model_dir) and header["policy"]["mode"] == "sample"


def test_bad_model_path_is_one_line(games_root, tmp_path):
    assert_one_error_line(mpr("eval", "--agent", "llm", "--model", str(tmp_path / "nope"), "--limit", "1"),
                          "no such directory")
