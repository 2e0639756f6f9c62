"""The DuckDB lineage catalog: schema and migrations, the single writer, audit queries."""

from ftbridge.lineage.catalog import Catalog, default_catalog_path

__all__ = ["Catalog", "default_catalog_path"]
