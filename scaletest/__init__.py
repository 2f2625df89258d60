"""`bigfleet scaletest`: profiles, the local substrate, the runner and its gates, and the
helm substrate, which only writes a profile's topology as Helm values."""
