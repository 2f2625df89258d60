"""The closed loop (validation.md §2.1): clusters of Pods whose demand reacts to the shard.

Every cycle the clusters' workloads roll up their Pods through the operator's
own roll-up, the simulated shard (`SimShard`: the real engine, executor and
reconcile) decides and acts, and a small scheduler binds pending Pods onto the
machines each cluster holds, evicting the Pods of machines it lost. Scenarios
live in `scenarios/` and declare their pass conditions.
"""
