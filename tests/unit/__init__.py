"""Pure tests: no Redis, no servers."""
