"""`python -m services.routing` runs one process of the routing service."""

from services.routing.app import main

main()
