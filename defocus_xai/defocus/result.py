""":class:`DefocusResult`: the maps one call of the estimator returns, with the config that made them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

__all__ = ["DefocusResult"]


@dataclass(frozen=True)
class DefocusResult:
    """Output of :func:`~defocus_xai.defocus.estimate_defocus`.

    Attributes
    ----------
    dense : torch.Tensor
        ``(B, 1, size, size)`` float32 sigma map in pixels of the ``size`` grid, in
        ``[0, sigma_max]``; differentiable for ``propagation="guided"`` / ``"none"``.
    sparse : torch.Tensor
        ``(B, 1, size, size)`` float32 sigma at edge pixels, zero elsewhere; differentiable at edge
        pixels.
    edges : torch.Tensor
        ``(B, 1, size, size)`` float32 edge mask (0 or 1), no gradient.
    edgeless : torch.Tensor
        ``(B,)`` bool: samples without any edge pixel (constant or featureless images), whose maps
        are all zeros.
    config : dict
        The estimator settings that made the maps (``EstimatorConfig.to_dict()``, JSON-able).

    Examples
    --------
    >>> import torch, defocus_xai as dx
    >>> r = dx.estimate_defocus(torch.rand(2, 3, 64, 64), size=64)
    >>> r.dense.shape, r.edgeless.tolist()
    (torch.Size([2, 1, 64, 64]), [False, False])
    """

    dense: torch.Tensor
    sparse: torch.Tensor
    edges: torch.Tensor
    edgeless: torch.Tensor
    config: dict = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def detach(self) -> "DefocusResult":
        """The same result with every tensor detached from the autograd graph.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.estimate_defocus(torch.rand(1, 3, 32, 32), size=32).detach().dense.requires_grad
        False
        """
        return replace(self, dense=self.dense.detach(), sparse=self.sparse.detach(),
                       edges=self.edges.detach(), edgeless=self.edgeless.detach())

    def to(self, device) -> "DefocusResult":
        """The same result with every tensor moved to ``device``.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.estimate_defocus(torch.rand(1, 3, 32, 32), size=32).to("cpu").dense.device.type
        'cpu'
        """
        return replace(self, dense=self.dense.to(device), sparse=self.sparse.to(device),
                       edges=self.edges.to(device), edgeless=self.edgeless.to(device))

    def numpy(self) -> dict:
        """Detached CPU numpy copies: ``{"dense", "sparse", "edges", "edgeless"}``.

        Examples
        --------
        >>> import torch, defocus_xai as dx
        >>> dx.estimate_defocus(torch.rand(1, 3, 32, 32), size=32).numpy()["dense"].dtype
        dtype('float32')
        """
        return {k: getattr(self, k).detach().cpu().numpy()
                for k in ("dense", "sparse", "edges", "edgeless")}
