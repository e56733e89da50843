"""Açık Kapı: the five services and what they share (common)."""
