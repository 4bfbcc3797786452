"""`python -m bot` is the `ankomst` command."""

from handlers.cli import main

raise SystemExit(main())
