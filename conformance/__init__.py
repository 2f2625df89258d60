"""The provider conformance suite: black-box checks of a live CapacityProvider over gRPC.

Runnable by any provider author (`bigfleet conformance --target HOST:PORT`).
Depends on the shared kernel's wire modules only, never on the fake provider.
"""
