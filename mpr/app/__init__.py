"""The application: the only place that knows everything.

What belongs here: the click command line (``cli``; commands only parse flags and call functions)
and the benchmark harness behind ``mpr bench`` (``benchmark``). Nothing below ``mpr.app`` imports it.
"""
