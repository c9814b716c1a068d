"""The kitchen CLI."""
