"""`python -m services.intake` runs one process of the intake service."""

from services.intake.app import main

main()
