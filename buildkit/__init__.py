"""efakit host side: render, lint, build, gate and push EFA training images."""

from verify import __version__

__all__ = ["__version__"]
