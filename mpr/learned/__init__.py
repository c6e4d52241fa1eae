"""Learned components: the Policy and Scorer nouns of ``mpr.core`` built on an ``Engine``.

What belongs here: the LLM policy (``policy``: score / sample / score-sample modes) and the scorers
(``scorer``: the trained PRM, the zero-shot judge, and the policy that ranks by a scorer). The
learned world model lives in ``mpr.worldmodel``; how these are trained, in ``mpr.training``.
"""
