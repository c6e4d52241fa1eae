"""``python -m mpr`` runs the command line."""

from mpr.app.cli import main

main()
