"""Per-cluster kopf operators: the cluster operator and the unschedulable-pod controller.

Arrive with issue #5. Import the shared kernel `bigfleet` only; talk to their
shard over one outbound Shard.Session stream.
"""
