"""The shard's runtime: sessions with operators, provider client and reconcile, the cycle
loop and executor, the Shard resource, metrics and health. The engine stays pure;
everything with I/O lives here. Never imports the coordinator package.
"""
