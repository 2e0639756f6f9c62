"""One adapter module per engine: the only places ftbridge calls private Spark / Ray APIs."""
