"""Server-rendered web UI under /ui."""
