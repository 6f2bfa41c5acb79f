"""The matplotlib backend of grading kernels: figures are built as usual but never drawn.

Rendering the course's figures to PNG is a quarter of a notebook's run time and none of its grade, so grading
kernels run with ``MPLBACKEND=module://grader_tests.kernel.figureless_backend`` (``make grade --figures`` keeps the
usual inline figures). Like the inline backend, every figure is closed when its cell ends; ``plt.show()``
closes them at once. A figure that student code draws itself (``fig.canvas.draw()``) is drawn, with Agg.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg


def show(*args: Any, **kwargs: Any) -> None:
    """What the inline backend would send to the notebook is dropped."""
    plt.close("all")


def _close_after_each_cell() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.events.register("post_execute", show)


_close_after_each_cell()
