"""mpr: model-predictive planning for LLM agents.

The package is a house of layers, bottom first; each imports only the ones before it
(``tests/test_architecture.py`` holds it to that):

* ``mpr.errors``, ``mpr.config``, ``mpr.owned`` — errors, config plumbing, files mpr may write;
* ``mpr.core`` — the five nouns with their batched verbs, the optional verbs as protocols;
* ``mpr.alfworld`` (the game), ``mpr.lm`` (engines, weights, checkpoints, prompts),
  ``mpr.learned`` (LLM policy, scorers), ``mpr.worldmodel``, ``mpr.planners``;
* ``mpr.compose`` — the composition root that builds every component; ``mpr.checks`` — contracts;
* ``mpr.run`` (episodes, executors, eval/plan), ``mpr.training``, and at the top ``mpr.app``
  (CLI, bench harness), the only part that knows everything.

Heavy imports (torch, alfworld, textworld, vllm) happen inside the functions that need them so
``mpr --help`` stays instant.
"""

__version__ = "0.1.0"
