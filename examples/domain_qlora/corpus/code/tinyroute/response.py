# Copyright (c) 2024 The tinyroute authors.
# Licensed under the MIT License. See LICENSE for details.
"""Responses returned by handlers."""

import json


class Response:
    """An HTTP response with a status code, headers and a text body."""

    def __init__(self, status=200, body="", headers=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, data, status=200):
        """Build a response whose body is data encoded as JSON."""
        return cls(status, json.dumps(data), {"content-type": "application/json"})

    def with_header(self, name, value):
        """Return a copy of this response with one more header."""
        headers = dict(self.headers)
        headers[name] = value
        return Response(self.status, self.body, headers)
