"""The scenario format: its operations and keys (`scenario`), the YAML loader (`loader`) and the
life-cycle of the names a scenario introduces (`names`)."""

__all__: list[str] = []
