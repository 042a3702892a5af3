"""The aiohttp server behind ``har-stream serve``: WebRTC signalling, the live page, the JSON API.

It uses the engine (``har_stream``) and never the other way round; ``server.app.create_app`` builds it.
"""
