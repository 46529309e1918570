"""The `lipsync` command (worker/cli/main.py, installed as `lipsync`) and the progress bar
it shares with the demo."""

from worker.cli.progress import describe, wait_for

__all__ = ["describe", "wait_for"]
