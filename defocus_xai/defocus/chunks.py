"""Running the estimator on the CPU: a batch in small chunks, spread over the torch threads.

Why and how it is bitwise neutral: ``docs/estimator.md`` ("Batches, devices, determinism").
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

__all__ = ["run_in_cpu_chunks"]

#: Most samples in a chunk, and the pixels a chunk aims at (two 299 x 299 maps: the working set of
#: the filter chains then stays near the per-core caches; 20 % less CPU time than chunks of 8 there).
CPU_CHUNK = 8
CHUNK_PIXELS = 2 * 299 * 299
_CPU_LOCK = threading.Lock()


def run_in_cpu_chunks(fn: Callable, batch: torch.Tensor, pixels: int | None = None,
                      outputs: tuple | None = None):
    """``fn`` over chunks of at most ``CPU_CHUNK`` samples (and about ``CHUNK_PIXELS`` pixels),
    concatenated back.

    Each chunk runs single-threaded torch ops, the chunks concurrently in ``torch.get_num_threads()``
    worker threads (a batch smaller than ``CPU_CHUNK`` times the thread count is cut so that every
    worker gets a chunk). The torch thread count is set to 1 for the duration of the call and
    restored afterwards; calls are serialized by a lock so that they cannot interleave. Without
    gradients, every worker copies its part into the outputs itself (no serial concatenation).

    Parameters
    ----------
    fn : callable
        ``(B, ...) tensor -> tuple of (B, ...) tensors``, independent per sample.
    batch : torch.Tensor
        The input batch.
    pixels : int, optional
        Pixels per sample that ``fn`` works on (default: the batch's own ``H x W``; 1 for a batch
        of scalars or vectors).
    outputs : tuple of torch.Tensor, optional
        Preallocated ``(B, ...)`` results (no gradient): ``fn`` is then called as
        ``fn(part, out_parts)`` with the matching slices of ``outputs`` and writes its results into
        them (no copy afterwards); ``outputs`` is returned.

    Returns
    -------
    tuple of torch.Tensor
        ``fn(batch)``, computed chunk by chunk.

    Examples
    --------
    >>> import torch
    >>> out = run_in_cpu_chunks(lambda x: (x * 2, x + 1), torch.arange(20.0))
    >>> out[0].shape, bool(out[1][19] == 20)
    (torch.Size([20]), True)
    """
    n = batch.shape[0]
    with _CPU_LOCK:
        n_threads = torch.get_num_threads()
        per = int(pixels or (batch.shape[-2] * batch.shape[-1] if batch.dim() >= 3 else 1))
        chunk = max(1, min(CPU_CHUNK, CHUNK_PIXELS // max(per, 1)))
        size = max(1, min(chunk, -(-n // n_threads)))         # every worker gets a chunk
        starts = range(0, n, size)
        workers = min(n_threads, len(starts))
        grad = torch.is_grad_enabled()
        concatenate = outputs is None and (grad or len(starts) == 1)   # autograd needs the parts
        out: list = [] if outputs is None else list(outputs)
        out_lock = threading.Lock()

        def run(start):
            if outputs is not None:
                fn(batch[start:start + size], tuple(o[start:start + size] for o in outputs))
                return None
            with torch.set_grad_enabled(grad):
                part = fn(batch[start:start + size])
            if concatenate:
                return part
            # Without gradients, each worker copies its part into the outputs (allocated by the
            # first part to finish): no serial concatenation of the whole batch after the workers.
            with out_lock:
                if not out:
                    out.extend(torch.empty((n,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
                               for t in part)
            for o, t in zip(out, part):
                o[start:start + t.shape[0]].copy_(t)
            return None

        if n_threads > 1:
            torch.set_num_threads(1)
        try:
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    parts = list(pool.map(run, starts))
            else:
                parts = [run(s) for s in starts]
        finally:
            if n_threads > 1:
                torch.set_num_threads(n_threads)
    if not concatenate:
        return tuple(out)
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(t) for t in zip(*parts))
