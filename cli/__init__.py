"""The convt-audio command line (Typer); the engine lives in convt_audio."""
