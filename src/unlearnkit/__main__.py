"""``python -m unlearnkit`` runs the CLI."""

from unlearnkit.cli import main

main()
