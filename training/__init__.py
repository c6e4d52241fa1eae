"""Training: rollouts, AgentPRM / InversePRM reward models, world model and policy (see docs/training.md).

* :mod:`training.rollout` — ``mpr rollout``: K rollouts per game, reset-50-50, steered exploration; records.
* :mod:`training.targets` — AgentPRM Monte-Carlo Q targets, state values, reward shaping.
* :mod:`training.trainer` — the one resumable training loop and ``TrainConfig``; presets in ``presets/``.
* :mod:`training.prm`, :mod:`training.world`, :mod:`training.policy` — the stages; :mod:`training.iterate`
  — one AgentPRM iteration (rollouts -> PRM -> policy).
"""
