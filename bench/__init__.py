"""The benchmarks behind `bigfleet bench`: each prints figures and returns them for JSON.

Tooling, not a component: a benchmark may reach into any component's internals and
start local control planes; nothing but the CLI imports it.
"""
