"""Reporting: the governorship's figures, folded from application events into its own read model."""
