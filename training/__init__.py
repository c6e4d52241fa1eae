"""Training: rollouts, AgentPRM / InversePRM reward models, world model and policy (see docs/training.md).

* :mod:`mpr.training.rollout` — ``mpr rollout``: K rollouts per game, reset-50-50, steered exploration; records.
* :mod:`mpr.training.targets` — AgentPRM Monte-Carlo Q targets, state values, reward shaping.
* :mod:`mpr.training.trainer` — the one resumable training loop and ``TrainConfig``; presets in ``presets/``.
* :mod:`mpr.training.prm`, :mod:`mpr.training.world`, :mod:`mpr.training.policy` — the stages; :mod:`mpr.training.iterate`
  — one AgentPRM iteration (rollouts -> PRM -> policy).
"""
