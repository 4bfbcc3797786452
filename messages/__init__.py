"""Rendering of everything sent to people. Pure: data in, text out."""
