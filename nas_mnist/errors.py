"""The errors a user can cause. The CLI turns these (and OS errors) into one line and exit 2;
anything else is a bug and keeps its traceback."""


class NasMnistError(Exception):
    """Bad input or an unusable environment: reported in one line."""


class SpecError(NasMnistError, ValueError):
    """An architecture, recipe or winner file describes no valid network or training run."""
