"""Draw the report's figures and write them as PNG files, here or in worker processes.

A figure is described by a :class:`Plot` (a plot function and its arguments) and drawn by
:func:`render_png`, in this process or in a pool of ``spawn`` worker processes (``fork``
is not safe once numba or OpenMP threads exist). Figures are independent, so workers
draw them side by side, at the price of one import of matplotlib and ArviZ per worker
(about 3 s of CPU); :class:`FigureWriter` starts its workers before the first figure is
ready, so that import overlaps with reading the store.

Measured on the 2-core machine the report is built on, shared with other work
(``experiments/benchmarks/report_speed.py``): two workers made the report 1.6-2x
*slower* than drawing in the main process, because the workers' imports and the main
process compete for the same cores. Drawing in the main process is therefore the
default of :func:`workbench.report.build_report`; workers pay off with more free cores.
"""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

__all__ = ["FIGURE_DPI", "PNG_COLORS", "FigureWriter", "Plot", "render_png"]

#: Resolution and palette size of the PNG figures: sharp on screen, small on disk.
FIGURE_DPI = 90
PNG_COLORS = 128


class Plot(NamedTuple):
    """A figure to draw: ``function(*args, **kwargs)``.

    ``function`` returns a matplotlib ``Figure`` or an ArviZ ``PlotCollection`` (whose
    ``viz["figure"]`` holds it). In a worker process the function and its arguments are
    pickled, so the function must be importable (a module-level function).
    """

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = {}


def render_png(plot: Plot, path: str | Path) -> None:
    """Draw ``plot`` and write it to ``path`` as a PNG with a palette of ``PNG_COLORS``.

    A palette of 128 colours looks the same as the full-colour plot and is a third of the
    size, which keeps committed example reports small. The fast octree quantizer takes
    half the time of median cut and gives slightly smaller files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    from PIL import Image

    drawn = plot.function(*plot.args, **plot.kwargs)
    fig = drawn if isinstance(drawn, Figure) else drawn.viz["figure"].item()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(
            colors=PNG_COLORS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
    palette.save(path, optimize=True)


def _start_worker() -> None:
    """Import the plotting stack in a new worker, before its first figure arrives."""
    import matplotlib

    matplotlib.use("Agg")
    import workbench.report.plots  # noqa: F401


class FigureWriter:
    """Writes figures as they are submitted; ``close`` (or leaving the ``with``) waits.

    This process draws a figure itself when every worker is busy (or still starting),
    so the work is shared without guessing how long each figure takes.

    Parameters
    ----------
    workers : int
        Processes drawing figures, this one included: ``workers - 1`` worker processes
        are started. 0 or 1 draws every figure here, when it is submitted.

    Raises
    ------
    Exception
        ``close`` re-raises the first error of a figure, with the worker's traceback.
    """

    def __init__(self, workers: int) -> None:
        self._pending: list[Future[None]] = []
        self._pool: ProcessPoolExecutor | None = None
        self._n_workers = max(workers - 1, 0)
        if self._n_workers:
            self._pool = ProcessPoolExecutor(
                self._n_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
            )
            # A spawn pool starts a process per submission until it is full; start them
            # now, so that their imports overlap with reading the store.
            self._pending = [self._pool.submit(_start_worker) for _ in range(self._n_workers)]

    def submit(self, plot: Plot, path: str | Path) -> None:
        """Draw ``plot`` into ``path``: in an idle worker, else now, in this process."""
        busy = sum(not future.done() for future in self._pending)
        if self._pool is None or busy >= self._n_workers:
            render_png(plot, path)
        else:
            self._pending.append(self._pool.submit(render_png, plot, path))

    def close(self) -> None:
        """Wait for every submitted figure; raise the first error."""
        if self._pool is None:
            return
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        elif self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
