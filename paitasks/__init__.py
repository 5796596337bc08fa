"""paitasks: build and push a tree of interdependent Docker images with doit."""

__version__ = "0.1.0"
