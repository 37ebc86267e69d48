"""The EM core's vocabularies and workbench's own defaults, importable without numba.

:class:`~workbench.em.GaussianMixture` keeps scikit-learn's defaults (``n_init=1``), because it
is a drop-in; the study config and ``workbench fit`` run several starts by default, because
one k-means start finds a poor local maximum often enough to bias a study.
"""

from __future__ import annotations

__all__ = ["INIT_METHODS", "WORKBENCH_N_INIT"]

#: Values of ``GaussianMixture(init_params=...)``, as scikit-learn.
INIT_METHODS: tuple[str, ...] = ("kmeans", "k-means++", "random", "random_from_data")
#: EM starts in a study and in ``workbench fit`` unless the user says otherwise.
WORKBENCH_N_INIT = 3
