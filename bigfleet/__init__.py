"""BigFleet: one import package for every part.

The modules directly in this folder are the shared kernel (wire, CRD models,
fencing, errors, lifecycle and requirement vocabulary, clock, supervision, logs,
metrics); the subpackages linked in from the repository's top-level folders are
the components (shard, coordinator, operators, providers_fake, conformance), the
tooling (sim, controlplane, bench) and the CLI that composes them. ADR 0016.
"""

__version__ = "0.1.0"
