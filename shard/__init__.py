"""Shard: owns a slice of machines and runs the three-phase decision engine every cycle.

engine/ (pure: machine, needs, inventory, decision) arrives with issue #3,
runtime/ (Session server, outbox, provider reconcile, Shard resource) with #4.
Imports the shared kernel `bigfleet` only; never the coordinator.
"""
