"""`python -m socialguard` runs the CLI (used by tests that need the current interpreter)."""

from socialguard.cli import main

main()
