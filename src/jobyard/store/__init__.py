"""Storage adapters behind the :class:`~jobyard.store.protocol.Store` protocol."""
