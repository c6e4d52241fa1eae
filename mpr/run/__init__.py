"""Running episodes: the receding-horizon loop, its records, and where episodes run.

What belongs here: the event loop over an ``Env`` and a ``Planner`` with its append-only records and
summaries (``episodes``), the executors that spread episodes over a process pool or Ray actors
(``executor``), progress display (``progress``), and ``mpr eval`` / ``mpr plan`` as functions
(``evaluation``). Components are built by the composition root, ``mpr.compose``.
"""
