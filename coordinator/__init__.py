"""Coordinator: shard membership, assignments and rebalancing, with its state in etcd.

Arrives with issue #6. Imports the shared kernel `bigfleet` only; talks to
shards over the wire.
"""
