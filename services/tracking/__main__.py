"""`python -m services.tracking` runs one process of the tracking service."""

from services.tracking.app import main

main()
