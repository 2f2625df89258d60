"""The in-memory fake CapacityProvider, a test and demo fixture served over gRPC.

`fleet` holds machines and their lifecycle (no I/O), `calls` maps the wire
requests onto it, `server` serves it as CapacityProvider on grpc.aio,
`inprocess` makes the same calls without a network (the simulator's provider),
`config` builds one from YAML or quick flags, `state` keeps it in a file
across restarts (`--state`), `app` runs the whole process (`bigfleet provider
fake`).
Imports the shared kernel `bigfleet` only.
"""
