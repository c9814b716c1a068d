# Copyright (c) 2024 The tinyroute authors.
# Licensed under the MIT License. See LICENSE for details.
"""The request object handed to handlers."""

from urllib.parse import parse_qs


class Request:
    """An incoming HTTP request: method, path, query parameters, headers and body."""

    def __init__(self, method, path, headers=None, body=b""):
        path, _, query = path.partition("?")
        self.method = method.upper()
        self.path = path or "/"
        self.query = {k: v[-1] for k, v in parse_qs(query).items()}
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body

    def header(self, name, default=None):
        """Return the header called name (case-insensitive), or default."""
        return self.headers.get(name.lower(), default)

    def json(self):
        """Decode the body as JSON; raises ValueError when it is not valid JSON."""
        import json

        return json.loads(self.body or b"null")
