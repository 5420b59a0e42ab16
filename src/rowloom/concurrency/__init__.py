"""Shared asyncio primitives that both admission layers and the engine build on.

Imports no other rowloom layer, so any layer may use it.
"""
