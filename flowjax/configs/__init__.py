"""Training configurations: one module per model family, each with `get_config(preset)`."""
