"""``python -m clusterfw`` runs the command line."""

from clusterfw.core.cli import main

main()
