"""End-to-end tests on kind: from unschedulable Pods to bound machines, across clusters."""
