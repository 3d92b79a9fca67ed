"""The shell commands after training: ``embed``, ``search``, ``export`` (one module each)."""
