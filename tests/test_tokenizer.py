"""The from-scratch tokenizer's corpus: the game's own sentences are single-token words."""

import json

import pytest

from mpr.errors import MprError
from mpr.lm.weights import alfworld_corpus


def _game(tmp_path, grammar: str, walkthrough=("go to desk 1",)):
    f = tmp_path / "game.tw-pddl"
    f.write_text(json.dumps({"grammar": grammar, "walkthrough": list(walkthrough), "pddl_problem": ""}))
    return f


def test_every_grammar_block_is_read_as_the_transcript_writes_it(tmp_path):
    blocks = ['{"GotoLocation.feedback": [{"rhs": "You arrive at {r.name}."}]}',
              '{"task": [{"rhs": "Your task is to: put a mug in desk."}], "x": {"y": [{"rhs": "Nothing happens."}]}}']
    grammar = "grammar :: " + "".join(f'"""{b}""";\naction A {{ }}\n' for b in blocks)
    texts = alfworld_corpus([_game(tmp_path, grammar)])
    for text in ("You arrive at {r.name}.", " You arrive at {r.name}.", " Nothing happens.",
                 "\n(task: put a mug in desk.)", "\n> go to desk 1\n"):
        assert text in texts
    assert any(" 64," in t for t in texts)  # object numbers


def test_a_grammar_block_that_is_not_json_is_an_error_naming_the_game(tmp_path):
    with pytest.raises(MprError, match="game.tw-pddl: a grammar block is not JSON"):
        alfworld_corpus([_game(tmp_path, 'grammar :: """{"intro": [ """;')])


@pytest.mark.games
@pytest.mark.models
def test_the_tiny_tokenizer_spends_one_token_on_each_word_the_game_prints(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    # Feedback templates, the transcript's own marks, and numbers: each one token (v1's corpus lost the
    # feedback templates and spelled "You arrive at" in 8 tokens).
    for word in ("You", " arrive", " at", " On", " the", " you", " see", "Nothing", " happens",
                 " 16", " 33", " go", " take", " from", "task", ".)"):
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (word, [tok.decode([i]) for i in ids])
