"""``python -m latentsync_routes.cli``."""

from . import main

main()
