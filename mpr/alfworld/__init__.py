"""ALFWorld: everything that knows the game.

What belongs here: the game data (splits, task ids, game files, walkthroughs: ``data``), the real
stateful environment over TextWorld's PDDL engine (``env``) and its process pool (``pool``), the
load-time speed-ups of ALFWorld/TextWorld (``speedups``), and the reference agents that need no
model — walkthrough, handcoded expert, random (``agents``). Nothing here knows about language
models, planners or training.
"""
