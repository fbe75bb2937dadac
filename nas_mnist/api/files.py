"""The one writer of user files (every file all or nothing, nas_mnist/files.py), for callers
of the library face that write what a call returned (the CLI's --json-out)."""

from nas_mnist.files import check_writable, write_text  # noqa: F401
