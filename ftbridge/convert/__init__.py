"""The conversion engine: spill writer, Ray read tasks, rebuild path, to_spark."""
