"""The deterministic simulator: the real shard engine against the fake provider, in-process.

May import the shard engine and the fake provider; nothing imports it but the CLI.
"""
