"""Search settings: what a `search` command asks for, and the errors a search can end in."""

from __future__ import annotations

from dataclasses import dataclass

from nas_mnist.engine.data import Dataset
from nas_mnist.errors import NasMnistError
from nas_mnist.search.record import StudyMeta
from nas_mnist.search.space import SearchSpace
from nas_mnist.search.stopping import StopRule, make_rule


class SearchError(NasMnistError):
    """The search could not go on (workers died, every trial failing, nothing trainable)."""


class SettingsError(NasMnistError):
    """Search settings that cannot work (caught before the storage is touched)."""


@dataclass(frozen=True)
class SearchSettings:
    study: str
    storage: str
    space: str = "default"
    budget: int = 10_000
    max_macs: int | None = None
    epochs: int = 15
    last_n: int = 3
    objective: str = "min"  # min or mean of the last-N accuracies
    objectives: str = "score"  # "score" (budget as a constraint) or "score,params"
    trials: int = 20  # trained networks wanted in the study (refused samples do not count)
    timeout: float | None = None  # seconds
    seed: int = 0  # sampler seed
    sampler: str = "tpe"  # tpe (constraint-aware, multivariate) or random
    train_seed: int = 0
    jobs: int = 1
    threads: int | None = None  # per worker; default: the cores shared out
    device: str = "auto"
    data_dir: str | None = None
    val_split: int = 0
    prune: str = "asha"
    prune_options: tuple[tuple[str, str], ...] = ()
    artifacts: str | None = None  # folder for per-trial weights (None: keep none)

    def rule(self) -> StopRule:
        return make_rule(self.prune, dict(self.prune_options)).fit(self.epochs)

    def meta(self, space: SearchSpace, data: Dataset) -> StudyMeta:
        return StudyMeta(budget=self.budget, space=space.name, space_digest=space.digest,
                         objective=self.objective, objectives=self.objectives,
                         last_n=self.last_n, epochs=self.epochs, eval_split=data.eval_split,
                         val_split=self.val_split, max_macs=self.max_macs,
                         data_checksum=data.checksum, data_mean=data.mean, data_std=data.std,
                         rule=self.rule().describe())
