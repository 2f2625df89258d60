"""`bigfleet scaletest`: profiles, the local substrate, the runner and its gates."""
