"""The errors a library call raises: a bad argument (ApiError), and those a search or a storage
ends in (defined with the others in nas_mnist/errors.py)."""

from nas_mnist.errors import NasMnistError, SearchError, StorageError  # noqa: F401


class ApiError(NasMnistError, ValueError):
    """A bad argument to a library call; the message names the parameter."""

    names_keywords = True
