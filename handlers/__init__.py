"""Inbound adapters: HTTP routes and Telegram routers. They validate, authorise and answer."""
