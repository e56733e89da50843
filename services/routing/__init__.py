"""Routing: decides each application's category and institution, or queues it for an officer."""
