"""The in-memory fake CapacityProvider, a test and demo fixture served over gRPC.

Arrives with issue #3. Imports the shared kernel `bigfleet` only.
"""
