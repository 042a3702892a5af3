"""One module per ``har-stream`` sub-command; each exposes ``add_parser(subparsers)`` that sets ``func``."""
