"""Running rules: the Engine (event -> result, no I/O), decisions and explanations."""
