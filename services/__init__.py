"""Açık Kapı: the five services (intake, routing, tracking, notification, reporting) and what they share (common)."""
