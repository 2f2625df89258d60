"""BigFleet shared kernel: wire modules, CRD models, fencing, errors, logging and metrics.

Every component (shard, coordinator, operators, providers_fake) imports this
package and nothing of each other; `bigfleet.cli` is the composition root.
"""

__version__ = "0.1.0"
