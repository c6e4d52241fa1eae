"""The learned world model: a causal LM that writes the next observation.

``predict(states, actions)[i]`` is the observation the game would print after ``actions[i]`` in
``states[i]`` — one greedy ``Engine.generate`` call for the whole batch. Prompts come from
:func:`mpr.lm.prompts.world_prompt`, so siblings (same state, different actions) share a prefix;
a world model trained on whole episodes (``prompt_format: transcript``) continues the state's
transcript (cut as training cut it) after the action's segment, up to the end of the line.
An empty output becomes "Nothing happens." (what the game says to an action it ignores) and is
counted in ``empty_outputs``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mpr.core import State, check_aligned
from mpr.errors import MprError
from mpr.lm.engine import Engine, EngineConfig, SamplingConfig, SegmentGeneration, tokenizer_of
from mpr.lm.prompts import TRANSCRIPT_RESERVE, ChatFormat, action_segment, fitted_transcript, world_prompt

log = logging.getLogger(__name__)

EMPTY_FALLBACK = "Nothing happens."
MAX_NEW_TOKENS = 96
"""Tokens an observation may take (ALFWorld's longest listings are ~80 with the ALFWorld tokenizer)."""
TRANSCRIPT_WORLD_RESERVE = TRANSCRIPT_RESERVE + MAX_NEW_TOKENS
"""What a transcript world model keeps free after the state's transcript: the action and the observation."""


class LLMWorldModel:
    def __init__(self, engine: Engine, max_new_tokens: int = MAX_NEW_TOKENS, prompt_format: str = "chat"):
        if prompt_format not in ("chat", "transcript"):
            raise ValueError(f"prompt_format must be 'chat' or 'transcript', got {prompt_format!r}")
        if prompt_format == "transcript" and not isinstance(engine, SegmentGeneration):
            raise MprError("a transcript world model needs an engine that generates after segments (--backend hf)")
        self.engine, self.prompt_format = engine, prompt_format
        self.chat = ChatFormat.from_tokenizer(tokenizer_of(engine))
        self.sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=("<|im_end|>", "\n"))
        self.empty_outputs = 0
        self.predictions = 0

    def counters(self) -> dict[str, int]:
        return {"empty_outputs": self.empty_outputs, "predictions": self.predictions}

    def outcomes(self, states: Sequence[State], actions: Sequence[str],
                 observations: Sequence[str]) -> list[tuple[tuple[str, ...], bool]]:
        """The commands admissible after each predicted step, rebuilt from the text by ALFWorld's
        grammar (:mod:`mpr.worldmodel.grammar`); a learned model never knows that a game is won."""
        from mpr.worldmodel.grammar import next_admissible

        return [(next_admissible(s, a, o), False) for s, a, o in zip(states, actions, observations)]

    @classmethod
    def from_checkpoint(cls, path: str, engine: EngineConfig | None = None) -> LLMWorldModel:
        import dataclasses

        from mpr.lm.backends import make_engine
        from mpr.lm.checkpoints import load_checkpoint

        ckpt = load_checkpoint(path, "world", flag="--world")
        config = dataclasses.replace(engine or EngineConfig(), model=str(ckpt.path))
        return cls(make_engine(config), prompt_format=ckpt.meta.get("prompt_format", "chat"))

    def prompt(self, state: State, action: str) -> str:
        return world_prompt(state, action, self.chat, self.engine.count_tokens,
                            self.engine.config.max_length - self.sampling.max_new_tokens)

    def predict(self, states: Sequence[State], actions: Sequence[str]) -> list[str]:
        if len(states) != len(actions):
            raise ValueError("predict: states and actions differ in length")
        if not states:
            return []
        if self.prompt_format == "transcript":
            prompts = [fitted_transcript(s, self.engine, TRANSCRIPT_WORLD_RESERVE) + [action_segment(a)]
                       for s, a in zip(states, actions)]
            outs = self.engine.generate_segments(prompts, 1, self.sampling)
        else:
            outs = self.engine.generate([self.prompt(s, a) for s, a in zip(states, actions)], 1, self.sampling)
        result = []
        for (g,) in outs:
            text = g.text.strip()
            self.predictions += 1
            if not text:
                self.empty_outputs += 1
                log.debug("world model produced an empty observation; using %r", EMPTY_FALLBACK)
                text = EMPTY_FALLBACK
            result.append(text)
        check_aligned("WorldModel", result, states)
        return result
