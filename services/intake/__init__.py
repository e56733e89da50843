"""Intake: takes citizens' applications from every channel, checks, numbers and announces them."""
