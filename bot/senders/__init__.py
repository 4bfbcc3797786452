"""Outbound channels: the e-mail and Telegram senders."""
