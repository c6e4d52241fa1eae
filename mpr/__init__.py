"""mpr: model-predictive planning for LLM agents.

The core package holds the small, dependency-free vocabulary every other part
shares (``mpr.core``), the ALFWorld data and environment adapters, the episode
runner and the command line. Heavy imports (torch, alfworld, textworld) happen
inside the functions that need them so ``mpr --help`` stays instant.
"""

__version__ = "0.1.0"
