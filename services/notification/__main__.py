"""`python -m services.notification` runs one process of the notification service."""

from services.notification.app import main

main()
