"""`python -m rowloom.interface` runs the CLI (same as the `rowloom` script)."""

from rowloom.interface.cli import main

main()
