"""Settings of lipsync-worker, read from the environment once."""

from config.settings import ConfigError, Secret, Settings, get_settings, load_settings

__all__ = ["ConfigError", "Secret", "Settings", "get_settings", "load_settings"]
