"""The deterministic simulator: the real shard engine and runtime against the fake provider,
in-process, on simulated time.

May import the shard and the fake provider; nothing imports it but the CLI.
"""
