"""Progress bars that suit where the code runs: a widget in Jupyter, text on a terminal, silence otherwise.

Every loop of the library that shows progress goes through :func:`progress`; ``docs/notebooks.md`` says how to
get the widget (the ``notebook`` extra).
"""

from __future__ import annotations

import sys

__all__ = ["progress", "interactive"]


def _notebook_kernel() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), without importing IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _has_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def interactive() -> bool:
    """Whether a progress bar would be seen: a Jupyter kernel with ipywidgets, or stderr on a terminal.

    A kernel without ipywidgets counts as not interactive (tqdm would warn "IProgress not found" and print
    text bars into the notebook); so does a redirected stderr (logs, pipes, CI).

    Examples
    --------
    >>> isinstance(interactive(), bool)
    True
    """
    if _notebook_kernel():
        return _has_widgets()
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def progress(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual bar with ``total=``), shown only when useful.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; omit it for a bar advanced with ``bar.update(n)``.
    enabled : bool
        The caller's wish (e.g. ``progress=True`` of a public function). The bar is drawn only when this is
        true and :func:`interactive` is: a widget in Jupyter, a text bar on a terminal, nothing otherwise.
    **kwargs
        Passed to :class:`tqdm.auto.tqdm` (``total``, ``desc``, ``unit``, ``leave``...). A ``disable`` given
        here is combined with the rule above (either disables).

    Returns
    -------
    tqdm.auto.tqdm
        Always a tqdm object (a disabled one when not shown), so ``update``, ``set_postfix``, ``write``
        and the context-manager protocol work either way.

    Examples
    --------
    >>> total = 0
    >>> for i in progress(range(3), desc="demo"):
    ...     total += i
    >>> total
    3
    """
    show = enabled and interactive()
    if show and _notebook_kernel():
        from tqdm.auto import tqdm  # the widget (importing tqdm.auto warns in a kernel without ipywidgets)
    else:
        from tqdm.std import tqdm
    disable = bool(kwargs.pop("disable", False)) or not show
    return tqdm(iterable, disable=disable, **kwargs)
