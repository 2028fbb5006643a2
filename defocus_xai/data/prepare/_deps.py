"""Lazy imports of the optional packages of the ``ffpp`` extra (PyAV and dlib), with one clear error."""

from __future__ import annotations

#: How to install what :mod:`defocus_xai.data.prepare` needs.
INSTALL_HINT = 'pip install -e ".[ffpp]" (or pip install "defocus-xai[ffpp]")'


def _missing(package: str, module: str) -> ImportError:
    return ImportError(
        f"preparing FaceForensics++ videos needs {package} (module {module!r}), an optional dependency of "
        f"the 'ffpp' extra; install it with: {INSTALL_HINT}"
    )


def import_av():
    """Return the ``av`` module (PyAV) or raise an ImportError naming the ``ffpp`` extra."""
    try:
        import av
    except ImportError as exc:
        raise _missing("PyAV (pip package 'av')", "av") from exc
    return av


def import_dlib():
    """Return the ``dlib`` module or raise an ImportError naming the ``ffpp`` extra."""
    try:
        import dlib
    except ImportError as exc:
        raise _missing("dlib (pip package 'dlib-bin')", "dlib") from exc
    return dlib
