"""The library face: every command as a function, one keyword per flag, the same defaults.

    import nas_mnist as nm
    study = nm.search(budget=10_000, trials=20)       # nas-mnist search --budget 10000 --trials 20
    study.leaderboard()                               # a table in a notebook
    model = study.best.model()                        # an nn.Module with its weights
    study.export(formats=["onnx"])                    # nas-mnist export --format onnx

Library calls raise `NasMnistError` subclasses whose messages name the parameter; only the
CLI turns them into one line on stderr and an exit code.
"""

from nas_mnist.api.errors import ApiError  # noqa: F401
from nas_mnist.api.network import (BENCH_CONFIGS, Prediction, TrainPlan, bench, count,  # noqa: F401
                                   load_winner, predict, train)
from nas_mnist.api.results import export, report  # noqa: F401
from nas_mnist.api.search import search  # noqa: F401
from nas_mnist.searcher.defaults import STUDY_DEFAULTS  # noqa: F401
from nas_mnist.api.space import space_shares  # noqa: F401
from nas_mnist.api.study import Leaderboard, Study, Winner, load_study  # noqa: F401
