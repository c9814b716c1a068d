# Copyright (c) 2024 The tinyroute authors.
# Licensed under the MIT License. See LICENSE for details.
"""URL routing: map a method and a path pattern to a handler."""

import re

_PARAM = re.compile(r"<(\w+)>")


def compile_pattern(pattern):
    """Turn a path pattern such as '/users/<id>' into a compiled regular expression."""
    regex = _PARAM.sub(r"(?P<\1>[^/]+)", pattern)
    return re.compile("^" + regex + "$")


class Router:
    """Holds routes and dispatches requests to their handlers."""

    def __init__(self):
        self.routes = []

    def add(self, method, pattern, handler):
        """Register handler for requests with this method whose path matches pattern."""
        self.routes.append((method.upper(), compile_pattern(pattern), handler))
        return handler

    def route(self, pattern, methods=("GET",)):
        """Decorator form of add: @router.route('/items/<id>', methods=['GET'])."""

        def decorate(handler):
            for method in methods:
                self.add(method, pattern, handler)
            return handler

        return decorate

    def match(self, method, path):
        """Return (handler, params) for the first matching route, or (None, {})."""
        for route_method, regex, handler in self.routes:
            m = regex.match(path)
            if m and route_method == method.upper():
                return handler, m.groupdict()
        return None, {}

    def dispatch(self, request):
        """Call the matching handler with the request and its path params; 404 otherwise."""
        from tinyroute.response import Response

        handler, params = self.match(request.method, request.path)
        if handler is None:
            return Response(status=404, body="not found")
        return handler(request, **params)
