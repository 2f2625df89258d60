"""`python -m bigfleet.cli`: the same as the `bigfleet` command."""

from bigfleet.cli import main

main()
