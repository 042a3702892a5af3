"""One module per ``har-stream`` sub-command; each exposes ``add_parser(subparsers)`` that sets ``func``.

``serve`` is the server package's (server/cli.py), added through an entry point (har_stream/plugins.py).
"""
