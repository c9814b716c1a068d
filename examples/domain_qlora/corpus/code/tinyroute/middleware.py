# Copyright (c) 2024 The tinyroute authors.
# Licensed under the MIT License. See LICENSE for details.
"""Middleware: functions wrapped around the router's dispatch."""

import time


def timing(dispatch):
    """Middleware adding an x-elapsed-ms header with the time dispatch took."""

    def wrapped(request):
        start = time.perf_counter()
        response = dispatch(request)
        elapsed = (time.perf_counter() - start) * 1000
        return response.with_header("x-elapsed-ms", f"{elapsed:.1f}")

    return wrapped


def require_header(name):
    """Middleware factory rejecting requests without header name with a 400 response."""
    from tinyroute.response import Response

    def middleware(dispatch):
        def wrapped(request):
            if request.header(name) is None:
                return Response(status=400, body=f"missing header {name}")
            return dispatch(request)

        return wrapped

    return middleware


def chain(dispatch, *middlewares):
    """Wrap dispatch in middlewares; the first one listed runs outermost."""
    for middleware in reversed(middlewares):
        dispatch = middleware(dispatch)
    return dispatch
