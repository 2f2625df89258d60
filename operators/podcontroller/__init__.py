"""The unschedulable-pod controller: a CapacityRequest for every Pod that cannot be placed."""
