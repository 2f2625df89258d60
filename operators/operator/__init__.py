"""The per-cluster operator: rolls CapacityRequests up to its shard, answers its frames."""
