"""The local stack: its supervisor (stack.py), installer, topics, SMTP sink and demo data."""
