"""``kitchen serve``: a Tinker-compatible HTTP server over kitchen's training/sampling ports.

Import :func:`kitchen.server.app.create_app` (needs the ``server`` extra and the tinker
SDK for its protobuf definitions); this package itself imports nothing heavy.
"""
