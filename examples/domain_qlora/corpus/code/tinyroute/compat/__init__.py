"""Compatibility shims for handlers written against tinyroute 0.1."""
