"""Fixtures shared by both tiers (none at present).

The unit tier starts no redis-server or other process of the stack; fixtures that do
(`redis_server`, `stack`, `deployment`) live in tests/integration/conftest.py.
"""
