"""The `ftbridge` command line."""
