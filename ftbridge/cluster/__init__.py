"""Spark on Ray: Spark's standalone master and workers hosted in Ray actors."""
