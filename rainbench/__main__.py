"""`python -m rainbench` runs the command line."""

from rainbench.cli import main

main()
