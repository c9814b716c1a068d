# Copyright (c) 2024 The tinyroute authors.
# Licensed under the MIT License. See LICENSE for details.
"""tinyroute: a very small HTTP routing toolkit, written for the kitchen cookbook."""

from tinyroute.request import Request
from tinyroute.response import Response
from tinyroute.router import Router

__all__ = ["Request", "Response", "Router"]
