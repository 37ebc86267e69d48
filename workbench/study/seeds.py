"""Deterministic per-task seeds.

A task's seed depends only on the study seed, the condition id and the replication, never on
the order in which tasks run or how many workers run them:

``task_seed = SeedSequence(study_seed, spawn_key=(condition_id, replication))`` reduced to a
63-bit integer (so that SQLite can store it). The stored integer alone reproduces the task:
:func:`task_streams` splits it into independent streams for the simulation and for each
method, keyed by the stream's name, so enabling or disabling a method does not change the
data or the other methods' seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workbench.bayes.priors import BayesPriors
from workbench.simulate import Dataset, Scenario, simulate, simulate_from_truth

__all__ = [
    "PriorTruth",
    "TaskStreams",
    "draw_dataset",
    "regenerate_dataset",
    "task_seed",
    "task_streams",
    "truth_seed",
]

# Appending a stream leaves the others as they were: stream i is spawn key (i,).
_STREAMS = ("simulate", "em", "bayes", "advi", "bootstrap", "selection")


def task_seed(study_seed: int, condition_id: int, replication: int) -> int:
    """The 63-bit integer seed of one task.

    Parameters
    ----------
    study_seed : int >= 0
    condition_id, replication : int >= 0

    Returns
    -------
    int
        In ``[0, 2**63)``.
    """
    sequence = np.random.SeedSequence(study_seed, spawn_key=(condition_id, replication))
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def truth_seed(study_seed: int, condition_id: int) -> int:
    """The seed of a condition's true parameters when the study fixes the truth.

    Its spawn key has one element, so it never equals a task's seed stream.

    Returns
    -------
    int
        In ``[0, 2**32)``.
    """
    sequence = np.random.SeedSequence(study_seed, spawn_key=(condition_id,))
    return int(sequence.generate_state(1, np.uint32)[0])


class TaskStreams(NamedTuple):
    """Independent random streams of one task.

    Attributes
    ----------
    simulate : numpy.random.Generator
        Draws the truth and the data.
    em, bayes, advi : int
        Seeds (32-bit) for each method's ``random_state`` / ``random_seed``.
    bootstrap : int
        Seed (32-bit) of the EM bootstrap's draws.
    selection : int
        Seed (32-bit) of the ``[selection]`` step (its EM grid, per-K and sparse fits).
    """

    simulate: np.random.Generator
    em: int
    bayes: int
    advi: int
    bootstrap: int
    selection: int


def task_streams(seed: int) -> TaskStreams:
    """Split a task seed into the streams of the simulation and of each method.

    Parameters
    ----------
    seed : int
        A task seed from :func:`task_seed`.

    Returns
    -------
    TaskStreams
    """
    children = [np.random.SeedSequence(seed, spawn_key=(i,)) for i in range(len(_STREAMS))]
    simulate = np.random.default_rng(children[0])
    em, bayes, advi, bootstrap, selection = (
        int(c.generate_state(1, np.uint32)[0]) for c in children[1:]
    )
    return TaskStreams(
        simulate=simulate, em=em, bayes=bayes, advi=advi, bootstrap=bootstrap, selection=selection
    )


class PriorTruth(NamedTuple):
    """Where a ``truth = "prior"`` study draws its truths from.

    Attributes
    ----------
    priors : BayesPriors
        ``[methods.bayes.priors]``, with fixed hyperparameters.
    covariance_type : str
        ``[methods.bayes] covariance_type``.
    """

    priors: BayesPriors
    covariance_type: str


def draw_dataset(
    scenario: Scenario, rng: np.random.Generator, prior: PriorTruth | None = None
) -> Dataset:
    """A task's dataset from its simulation stream.

    Parameters
    ----------
    scenario : Scenario
    rng : numpy.random.Generator
        The task's ``simulate`` stream.
    prior : PriorTruth, optional
        Draw the truth from this prior (then the data from it with the same stream);
        default: the scenario's own truth.

    Returns
    -------
    Dataset
    """
    if prior is None:
        return simulate(scenario, rng)
    # PyMC-free callers (config loading) import this module: draw lazily
    from workbench.bayes.prior_sampling import draw_prior_mixture

    truth = draw_prior_mixture(
        prior.priors,
        scenario.n_components,
        scenario.n_features,
        covariance_type=prior.covariance_type,
        rng=rng,
    )
    return simulate_from_truth(truth, scenario, rng)


def regenerate_dataset(
    scenario: Scenario, seed: int, *, prior: PriorTruth | None = None
) -> Dataset:
    """Rebuild a task's dataset from its scenario and stored seed.

    Parameters
    ----------
    scenario : Scenario
        ``Scenario.from_dict`` of the task's ``conditions.scenario``.
    seed : int
        The task's ``tasks.seed``.
    prior : PriorTruth, optional
        For a ``truth = "prior"`` study: its Bayes priors and covariance type.

    Returns
    -------
    Dataset
        Identical to the data the task was fitted on.
    """
    return draw_dataset(scenario, task_streams(seed).simulate, prior)
