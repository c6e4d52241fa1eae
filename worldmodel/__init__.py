"""World models: ``WorldModel.predict(states, actions) -> list[str]`` (the next observation per pair).

What belongs here: the models planners simulate with, and what they need to read ALFWorld text.

* :class:`mpr.worldmodel.llm.LLMWorldModel` — the learned causal-LM world model (``mpr train world``).
* :class:`mpr.worldmodel.oracle.OracleWorldModel` — the real game as simulator (an upper bound).
* :mod:`mpr.worldmodel.grammar` — the commands admissible after a predicted step, from its text.
* :mod:`mpr.worldmodel.facts` — facts parsed from observations, for scoring predictions.
"""
