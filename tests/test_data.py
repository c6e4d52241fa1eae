import json
import shutil

import pytest

from mpr.alfworld import data
from mpr.errors import DataMissingError, GameFileError, MprError, TaskNotFoundError


def test_parse_task_folder_maps_lamp_to_toggle_target():
    p = data.parse_task_folder("look_at_obj_in_light-AlarmClock-None-DeskLamp-308")
    assert (p.object_target, p.parent_target, p.toggle_target, p.mrecep_target) == ("AlarmClock", "", "DeskLamp", "")
    q = data.parse_task_folder("pick_and_place_simple-Pencil-Mug-Shelf-308")
    assert (q.object_target, q.mrecep_target, q.parent_target, q.toggle_target) == ("Pencil", "Mug", "Shelf", "")
    with pytest.raises(GameFileError):
        data.parse_task_folder("not_a_task-X-None-Y-1")


def test_prepared_data_has_official_counts_and_traj_data(games_root):
    assert data.verify_counts(games_root) == data.EXPECTED_COUNTS
    game = data.iter_game_files(games_root, "valid_unseen")[0]
    traj = json.loads((game.parent / data.TRAJ_DATA_FILENAME).read_text())
    assert traj["task_type"] == game.parent.parent.name.split("-")[0]


def test_resolve_task_by_id_dir_and_file_agree(games_root):
    task = data.list_tasks("valid_unseen", limit=1)[0]
    assert data.resolve_task(task.id) == task
    assert data.resolve_task(str(task.trial_dir)).game_file == task.game_file
    assert data.resolve_task(str(task.game_file)).id == task.id


@pytest.mark.parametrize("bad", ["nosuch", "valid_unseen/nope/trial", "../etc", ""])
def test_unknown_task_is_a_clear_error(games_root, bad):
    with pytest.raises(TaskNotFoundError, match="unknown task"):
        data.resolve_task(bad)


def test_list_tasks_round_robin_covers_every_type(games_root):
    tasks = data.list_tasks("valid_unseen", limit=6)
    assert sorted(t.task_type for t in tasks) == sorted(data.TASK_TYPES)
    only = data.list_tasks("valid_unseen", task_type="look_at_obj_in_light")
    assert only and all(t.task_type == "look_at_obj_in_light" for t in only)
    assert len(data.list_tasks("valid_unseen")) == 134
    with pytest.raises(MprError, match="unknown split"):
        data.list_tasks("test")


def test_missing_data_dir_says_how_to_prepare(tmp_path):
    with pytest.raises(DataMissingError, match="mpr data prepare"):
        data.list_tasks("valid_unseen", data_dir=tmp_path)


def test_corrupt_game_file_is_a_game_file_error(tmp_path):
    bad = tmp_path / "game.tw-pddl"
    bad.write_text('{"pddl_domain": "(define')
    with pytest.raises(GameFileError, match="corrupt game file"):
        data.read_game_json(bad)


def test_prepare_from_directory_is_idempotent(games_root, tmp_path):
    # A source dir with just valid_unseen is incomplete: prepare must refuse, naming the counts.
    src = tmp_path / "src" / data.GAMES_DIRNAME
    shutil.copytree(games_root / "valid_unseen", src / "valid_unseen")
    with pytest.raises(DataMissingError, match=r"train: 0 \(expected 3553\)"):
        data.prepare(src.parent, tmp_path / "dest")
    # The full tree installs; a second run changes nothing and reports the same counts.
    logs: list[str] = []
    assert data.prepare(games_root, tmp_path / "dest2", log=logs.append) == data.EXPECTED_COUNTS
    logs.clear()
    assert data.prepare(games_root, tmp_path / "dest2", log=logs.append) == data.EXPECTED_COUNTS
    assert any("already installed" in m for m in logs) and not any("wrote" in m for m in logs)


def test_prepare_with_missing_source_is_an_error(tmp_path):
    with pytest.raises(MprError, match="not found"):
        data.prepare(tmp_path / "nope.tar.xz", tmp_path / "dest")
