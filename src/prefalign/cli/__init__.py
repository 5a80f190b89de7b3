"""The ``prefalign`` command line: one thin module per command group."""
