"""The provider conformance suite: black-box checks of a live CapacityProvider over gRPC.

Runnable by any provider author (`bigfleet conformance --target HOST:PORT`).
`registry` defines a check, `checks` and `durability` hold them by category,
`target` the calls and helpers, `process` a provider the suite starts itself
(`--provider-command`), `runner` the run and its verdicts.
Depends on the shared kernel's wire modules only, never on the fake provider.
"""
