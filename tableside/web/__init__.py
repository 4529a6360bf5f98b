"""Browser pages served by Tornado (plain modern JS, no build step)."""

from pathlib import Path

WEB_DIR = Path(__file__).parent / "static"
