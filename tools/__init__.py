"""Development tools of the project (not installed with it)."""
