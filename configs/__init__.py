"""Built-in configs and their weights (installed as convt_audio.configs)."""
