"""Every default of a search and the stopping rules offered, for a caller that shows them
(the CLI's --help); light: no torch, no Optuna."""

from nas_mnist.searcher.defaults import (DEFAULT_MAX_ACTIVATIONS, RUN_DEFAULTS,  # noqa: F401
                                         STUDY_DEFAULTS)
from nas_mnist.searcher.stopping import RULES  # noqa: F401
