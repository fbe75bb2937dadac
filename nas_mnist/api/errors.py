"""The error a library call raises for a bad argument."""

from nas_mnist.errors import NasMnistError


class ApiError(NasMnistError, ValueError):
    """A bad argument to a library call; the message names the parameter."""
