"""The shard's decision engine: pure Python, no I/O, no logging.

It reads an Inventory and a NeedsTable and returns actions, shortfalls and
per-phase timings; the runtime and the simulator carry the actions out.

Its hot modules are compiled to C at install when a compiler is at hand (ADR
0023); `BUILD` says which engine this process runs ("compiled" or "python").
"""

from bigfleet.shard.engine.build import select

BUILD = select()
