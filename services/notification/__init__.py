"""Notification: citizens' SMS (Kannel) and institutions' e-mail (SMTP), each sent at most once."""
