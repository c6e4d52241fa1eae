"""World models: predict the next observation of a (state, action) pair.

Implementations (the learned LLM world model and the oracle that clones the
real game) arrive with the training and planners issues; the interface is
:class:`mpr.core.WorldModel`.
"""
