"""nas-mnist: find the best small CNN for MNIST under a parameter budget.

    import nas_mnist as nm
    study = nm.search(budget=10_000, trials=20)   # the same keywords as `nas-mnist search` flags
    study.leaderboard(); study.pareto_plot(); model = study.best.model()
"""

from nas_mnist._version import __version__  # noqa: E402

from nas_mnist.spec.arch import ArchConfig, ConvSpec, Head, Transition  # noqa: E402
from nas_mnist.spec.recipe import Recipe  # noqa: E402
from nas_mnist.spec.seedrun import SeedRun  # noqa: E402
from nas_mnist.errors import NasMnistError  # noqa: E402
from nas_mnist.api import (Study, Winner, bench, count, export, load_study, load_winner,  # noqa: E402
                           predict, report, search, train)

__all__ = ["ArchConfig", "ConvSpec", "Head", "NasMnistError", "Recipe", "SeedRun", "Study",
           "Transition",
           "Winner", "__version__", "bench", "count", "export", "load_study", "load_winner", "predict",
           "report", "search", "train"]
