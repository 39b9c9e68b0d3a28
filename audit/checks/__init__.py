"""One module per audit check; each exposes ``SPEC`` (see :mod:`audit.registry`)."""
