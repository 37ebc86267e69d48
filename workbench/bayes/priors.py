"""Prior hyperparameters of the Bayesian mixture (no PyMC import: configs validate them).

:mod:`workbench.bayes.model` turns a :class:`BayesPriors` into PyMC distributions; see its
docstring for the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from workbench._validation import check_real, is_real

__all__ = ["DATA_SCALED", "BayesPriors", "data_scaled"]

#: The hyperparameters that :class:`BayesPriors` scales to the data when they are None.
DATA_SCALED: tuple[str, ...] = ("mean_loc", "mean_scale", "scale_prior")


@dataclass(frozen=True)
class BayesPriors:
    """Prior hyperparameters of the Bayesian mixture; ``None`` means a data-scaled default.

    The defaults are weakly informative on the scale of the data: they rule out
    components far outside the data or far wider than it, and little else.

    Attributes
    ----------
    dirichlet_concentration : float > 0, default 1.0
        ``alpha`` of the symmetric Dirichlet prior on the weights. 1 is uniform on the
        simplex; values below 1 favour emptying components, above 1 favour equal weights.
    mean_loc : float or sequence of d floats, optional
        Prior mean of the component means. Default: the per-feature mean of ``X``.
    mean_scale : float > 0, optional
        Prior sd of the component means, in data units and the same for every feature.
        Default: twice the per-feature sd of ``X``, so a mean at the edge of the data
        (about 2 sd out) is one prior sd away.
    scale_prior : float > 0, optional
        Scale of the HalfNormal prior on the component standard deviations, in data
        units. Default: the per-feature sd of ``X``; a component cannot be much wider than
        the data, and HalfNormal(sd) puts 95% of its mass below 2 sd.
    lkj_eta : float > 0, default 2.0
        Shape of the LKJ prior on component correlations (``full`` and ``tied``). 1 is
        uniform over correlation matrices; 2 mildly favours weak correlations.
    """

    dirichlet_concentration: float = 1.0
    mean_loc: float | tuple[float, ...] | None = None
    mean_scale: float | None = None
    scale_prior: float | None = None
    lkj_eta: float = 2.0

    def __post_init__(self) -> None:
        check_real("dirichlet_concentration", self.dirichlet_concentration, above=0)
        check_real("lkj_eta", self.lkj_eta, above=0)
        for key in ("mean_scale", "scale_prior"):
            value = getattr(self, key)
            if value is not None:
                check_real(key, value, above=0)
        loc = self.mean_loc
        if loc is not None:
            values = np.atleast_1d(np.asarray(loc, dtype=object))
            if values.ndim != 1 or not all(is_real(v) for v in values):
                raise ValueError(
                    f"mean_loc={loc!r} is not allowed; use a finite number or a list of "
                    "finite numbers, one per feature"
                )
            # A tuple keeps the frozen dataclass hashable.
            object.__setattr__(
                self,
                "mean_loc",
                float(values[0]) if np.ndim(loc) == 0 else tuple(map(float, values)),
            )

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> BayesPriors:
        """Build priors from a mapping such as a study config table.

        Parameters
        ----------
        mapping : mapping of str to value
            Keys are attribute names of :class:`BayesPriors`; missing keys keep their
            defaults.

        Raises
        ------
        ValueError
            For an unknown key or a bad value; the message names the key, the value and
            what is allowed.
        """
        allowed = [f.name for f in fields(cls)]
        for key, value in mapping.items():
            if key not in allowed:
                raise ValueError(
                    f"unknown prior {key!r} (value {value!r}); allowed keys: {', '.join(allowed)}"
                )
        return cls(**dict(mapping))

    def overrides(self) -> dict[str, Any]:
        """The attributes that differ from their defaults, as JSON-ready values.

        This is what a study config records (and hashes): writing a default out explicitly
        does not change a study's identity.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def resolve(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Per-feature hyperparameters for data ``X``, defaults filled in.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        dict with ``mean_loc``, ``mean_scale`` and ``scale_prior``, each of shape (n_features,)
        """
        d = X.shape[1]
        sd = X.std(axis=0)
        if self.mean_loc is None:
            loc = X.mean(axis=0)
        else:
            # __post_init__ leaves either a float or a tuple of floats.
            if isinstance(self.mean_loc, tuple) and len(self.mean_loc) != d:
                raise ValueError(
                    f"mean_loc={self.mean_loc!r} has {len(self.mean_loc)} values but the data "
                    f"have {d} features; give one number or {d}"
                )
            loc = np.broadcast_to(np.asarray(self.mean_loc, dtype=float), (d,)).copy()
        scale = 2.0 * sd if self.mean_scale is None else np.full(d, self.mean_scale)
        sigma = sd.copy() if self.scale_prior is None else np.full(d, self.scale_prior)
        return {"mean_loc": loc, "mean_scale": scale, "scale_prior": sigma}


def data_scaled(priors: BayesPriors) -> tuple[str, ...]:
    """The hyperparameters of ``priors`` left to the data (``None``), in :data:`DATA_SCALED` order.

    A truth drawn from the prior needs every one of them fixed: there are no data yet to
    scale them to.
    """
    return tuple(name for name in DATA_SCALED if getattr(priors, name) is None)
