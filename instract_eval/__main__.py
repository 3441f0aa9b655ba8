"""``python -m instract_eval`` runs the command line."""

from .cli import main

main()
