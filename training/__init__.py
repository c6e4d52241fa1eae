"""Training: rollouts, AgentPRM / InversePRM reward models, world model and policy.

Arrives with the training issue; it builds on :mod:`mpr.episodes` records.
"""
