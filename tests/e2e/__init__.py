"""End-to-end tests against real Redis/Valkey, SMTP, Bot API and Chromium."""
