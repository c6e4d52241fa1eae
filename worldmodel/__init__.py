"""World models: ``WorldModel.predict(states, actions) -> list[str]`` (the next observation per pair).

* :class:`worldmodel.llm.LLMWorldModel` — the learned causal-LM world model (``mpr train world``).
* :mod:`worldmodel.facts` — facts parsed from observations, for scoring predictions.
"""
