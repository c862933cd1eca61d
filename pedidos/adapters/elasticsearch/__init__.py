"""Elasticsearch adapters: the order index (writes) and the order lookup (reads)."""
