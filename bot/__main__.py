"""`python -m bot` is the `ankomst` command."""

from bot.cli import main

raise SystemExit(main())
