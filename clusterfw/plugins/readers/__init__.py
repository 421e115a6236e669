"""Built-in readers of input maps."""
