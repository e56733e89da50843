"""Tracking: each application's status, deadline and answer, and the citizens' status page."""
