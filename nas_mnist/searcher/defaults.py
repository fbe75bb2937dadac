"""Every default of a search, in one place and importable without torch or Optuna (the CLI's
--help reads them).

What a study *is* (STUDY_DEFAULTS, the size floor, the cost limit) is stored with it: these
values apply to a new study only; a resumed or joined study keeps its own. How a run goes
(RUN_DEFAULTS) is chosen anew by every run.
"""

STUDY_DEFAULTS = {"budget": 10_000, "space": "default", "epochs": 15, "objective": "min",
                  "objectives": "score", "val_split": 0, "split_seed": 0}

# Derived from the shipped studies (findings/search-economy.md, sections 1c and 3): every
# 5-seed-confirmed winner has at least 0.68 of its budget in parameters (trial 52: 0.94,
# trial 34: 0.68, the 4,000 winner trial 81: 0.83), and half the budget is the floor below which
# no network ever reached 99.3 % under 10,000; the five best networks on 5 seeds have at most
# 201,370 activations per image (trial 46), so the default cost limit refuses none of them.
# The floor was half the budget until 2026-12-04; at 0.5, 57 % of uniform draws of the default
# space at 10,000 fell under it and only 24 % were trainable; at 0.4 (with the widths scaled
# by the budget, spaces/default.yaml) 35 % are, and the winners' 0.68-0.94 stay far above it.
MIN_PARAMS_FRACTION = 0.4
DEFAULT_MAX_ACTIVATIONS = 210_000

# confirm_margin: a top-K trial more than 0.1 points below the leader's mean is not confirmed:
# the seed-to-seed std of the top networks is 0.04-0.08, so two more seeds would hardly lift it
# past the leader (mnist-4k-v4 spent 10 minutes on a trial 0.13 below, 99.14 vs 99.27 %).
RUN_DEFAULTS = {"trials": 20, "seed": 0, "sampler": "tpe", "train_seed": 0, "jobs": "auto",
                "prune": "asha", "warm_start": "auto", "confirm_top": 0, "confirm_seeds": 3,
                "confirm_margin": 0.1}
