"""The shard's decision engine: pure Python, no I/O, no logging.

It reads an Inventory and a NeedsTable and returns actions, shortfalls and
per-phase timings; the runtime and the simulator carry the actions out.
"""
