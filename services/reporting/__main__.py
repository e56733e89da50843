"""`python -m services.reporting` runs one process of the reporting service."""

from services.reporting.app import main

main()
