"""Shared contracts of Açık Kapı: event models, topic names, settings, auth and observability."""
