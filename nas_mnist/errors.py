"""The errors a user can cause. The CLI turns these (and OS errors) into one line and exit 2;
anything else is a bug and keeps its traceback."""


class NasMnistError(Exception):
    """Bad input or an unusable environment: reported in one line."""

    # True where the message names a library keyword (`last_n must be ...`), which the CLI
    # shows as its flag; False where it names a key of a file or nothing a user typed.
    names_keywords = False

    def __init__(self, *args, params: tuple[str, ...] = ()):
        super().__init__(*args)
        self.params = tuple(params)  # the keywords the message names in prose ("jobs needs seeds")


class SpecError(NasMnistError, ValueError):
    """An architecture, recipe or winner file describes no valid network or training run."""


class SearchError(NasMnistError):
    """The search could not go on (workers died, every trial failing, nothing trainable):
    exit 1, not 2, since the input was fine."""


class StorageError(NasMnistError, ValueError):
    """A storage URL cannot be opened or a study does not fit the request."""
