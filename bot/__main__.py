"""`python -m bot` is the `ankomst` command."""

# The one import of handlers/ from bot/: the command line lives in handlers/, and `python -m bot`
# is only its alias. pyproject.toml's import-linter contracts allow exactly this import.
from handlers.cli import main

raise SystemExit(main())
