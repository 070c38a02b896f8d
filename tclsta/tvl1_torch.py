"""Batched TV-L1 optical flow in PyTorch: OpenCV's DualTVL1OpticalFlow, many frame pairs at once.

Zach, Pock, Bischof, "A Duality Based Approach for Realtime TV-L1 Optical Flow",
DAGM 2007; Sánchez Pérez, Meinhardt-Llopis, Facciolo, "TV-L1 Optical Flow
Estimation", IPOL 2013 (Algorithms 1 and 2), as implemented by OpenCV's
``optflow/src/tvl1flow.cpp`` (CPU path), whose parameters, defaults and
numerics this module follows step for step:

* pyramid of ``nscales`` levels, each the previous one resized by ``scale_step``
  (bilinear, OpenCV's ``resize`` sampling and rounding), stopping before a side
  falls under 16 pixels; the flow starts at zero on the coarsest level and is
  resized bilinearly and divided by ``scale_step`` on the way down;
* per level, ``warps`` times: warp ``I1`` and its centred gradient by the current
  flow (bicubic, zero outside the image, as OpenCV's ``remap``), linearise the
  data term, then alternate the thresholding step for ``v``, the primal step
  ``u = v + theta * div(p)`` and Chambolle's dual step for ``p`` (``tau``,
  ``lambda``, ``theta``; ``p`` restarts from zero on each level), with a
  ``median_filtering`` x ``median_filtering`` median of ``u`` before each of at
  most ``outer_iterations`` rounds of at most ``inner_iterations`` steps;
* a pair stops iterating for the current warp once the squared update of its
  flow in one step, summed over the pixels, is at most ``epsilon**2 * H * W``.

Batching: every step is a tensor operation over a batch of N pairs of one size;
the Python loops run over levels, warps and iterations only. The stopping rule
is OpenCV's, per pair: after each step the pairs that have converged leave the
working batch (their state is stored back), so they cost nothing more in that
warp and each pair's result does not depend on the rest of the batch; the
warp ends when every pair has converged or the iteration limits are reached.
Checking convergence after every step synchronises a GPU with the host once
per step, which costs little next to the work of a batch.

Inputs follow OpenCV's convention: uint8 frames are used as they are (0-255),
float frames are taken to be in [0, 1] and scaled by 255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DualTVL1"]

MIN_LEVEL_SIZE = 16  # OpenCV stops the pyramid before a side gets smaller than this
FLT_EPSILON = torch.finfo(torch.float32).eps


def _resize_matrix(n_in: int, n_out: int, src_per_dst: float, device: torch.device) -> Tensor:
    """(n_out, n_in) matrix of OpenCV's bilinear ``resize`` along one axis (pixel centres, edge clamped)."""
    position = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * src_per_dst - 0.5
    left = position.floor()
    frac = position - left
    frac = torch.where(left < 0, 0.0, frac)
    left = left.clamp(0, n_in - 1).long()
    right = (left + 1).clamp(max=n_in - 1)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64, device=device)
    rows = torch.arange(n_out, device=device)
    matrix.index_put_((rows, left), 1 - frac, accumulate=True)
    matrix.index_put_((rows, right), frac, accumulate=True)
    return matrix.float()


def _resize(images: Tensor, size: tuple[int, int], src_per_dst: tuple[float, float]) -> Tensor:
    """Bilinear resize of (..., H, W) to (..., h, w) as separable matrix products."""
    rows = _resize_matrix(images.shape[-2], size[0], src_per_dst[0], images.device)  # (h, H)
    cols = _resize_matrix(images.shape[-1], size[1], src_per_dst[1], images.device)  # (w, W)
    return rows @ images @ cols.T


def _centred_gradient(images: Tensor) -> Tensor:
    """(N, H, W) -> (N, 2, H, W) central differences, one-sided (halved) at the borders."""
    padded = F.pad(images[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # (N, H+2, W+2)
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return torch.stack((dx, dy), dim=1)


def _forward_gradient(u: Tensor) -> tuple[Tensor, Tensor]:
    """(N, C, H, W) forward differences along x and y, zero on the last column / row."""
    return F.pad(u[..., 1:] - u[..., :-1], (0, 1)), F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))


def _add_divergence_(out: Tensor, px: Tensor, py: Tensor, weight: float) -> Tensor:
    """``out += weight * div(px, py)`` in place, all (N, C, H, W); ``div`` is the backward-difference
    divergence, the negative adjoint of ``_forward_gradient``."""
    out.add_(px, alpha=weight)[..., 1:].sub_(px[..., :-1], alpha=weight)
    out.add_(py, alpha=weight)[..., 1:, :].sub_(py[..., :-1, :], alpha=weight)
    return out


def _median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Comparators ``(a, b, keep_min, keep_max)`` that move the median of ``n`` values to position ``n // 2``.

    Batcher's odd-even merge sort (AFIPS 1968) on the next power of two (extra positions
    hold +inf, so comparators touching them never swap), pruned backwards to the
    comparators whose minimum or maximum the median depends on.
    """
    size = 1 << (n - 1).bit_length()
    comparators = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed, network = {n // 2}, []
    for a, b in reversed(comparators):
        if a in needed or b in needed:
            network.append((a, b, a in needed, b in needed))
            needed |= {a, b}
    return tuple(reversed(network))


def _median(u: Tensor, network: tuple[tuple[int, int, bool, bool], ...], size: int) -> Tensor:
    """(N, C, H, W) ``size`` x ``size`` median with replicated borders, as OpenCV's ``medianBlur``.

    The selection ``network`` runs as elementwise min/max over the shifted
    images, vectorised over the batch and the pixels (no sort).
    """
    h, w = u.shape[-2:]
    r = size // 2
    padded = F.pad(u, (r, r, r, r), mode="replicate")
    values = [padded[..., dy : dy + h, dx : dx + w] for dy in range(size) for dx in range(size)]
    for a, b, keep_min, keep_max in network:
        va, vb = values[a], values[b]
        if keep_min:
            values[a] = torch.minimum(va, vb)
        if keep_max:
            values[b] = torch.maximum(va, vb)
    return values[size * size // 2]


def _warp(images: Tensor, u: Tensor) -> Tensor:
    """Sample (N, K, H, W) images at x + u (N, 2, H, W): bicubic, zero outside the image, as OpenCV's ``remap``."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=u.device, dtype=u.dtype), torch.arange(w, device=u.device, dtype=u.dtype), indexing="ij"
    )
    x = (xs + u[:, 0]) * (2 / (w - 1)) - 1  # (N, H, W), -1 and 1 at the centres of the edge pixels
    y = (ys + u[:, 1]) * (2 / (h - 1)) - 1
    return F.grid_sample(images, torch.stack((x, y), dim=-1), mode="bicubic", padding_mode="zeros", align_corners=True)


def _primal_dual_step(
    u: Tensor,
    px: Tensor,
    py: Tensor,
    i1w_grad: Tensor,
    neg_inv_grad_sq: Tensor,
    rho_c: Tensor,
    l_t: float,
    theta: float,
    taut: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One inner iteration; returns the new (u, px, py) and each pair's squared update (N,).

    u, px, py: (N, 2, H, W) flow and its dual variables (x and y parts);
    i1w_grad: (N, 2, H, W) gradient of the warped I1; neg_inv_grad_sq, rho_c:
    (N, 1, H, W) -1/|grad|^2 and the constant part of the linearised residual.
    """
    # In-place updates of fresh tensors: each step is some 20 passes over memory, not 30.
    rho = torch.addcmul(rho_c, i1w_grad[:, :1], u[:, :1]).addcmul_(i1w_grad[:, 1:], u[:, 1:])  # (N, 1, H, W) residual at u
    shrink = rho.mul_(neg_inv_grad_sq).clamp_(-l_t, l_t)  # thresholding step TH: v = u + shrink * grad I1
    u_new = _add_divergence_(torch.addcmul(u, shrink, i1w_grad), px, py, theta)  # (N, 2, H, W)
    error = (u_new - u).square_().sum((1, 2, 3))  # (N,)
    ux, uy = _forward_gradient(u_new)
    norm = torch.hypot(ux, uy).mul_(taut).add_(1)  # (N, 2, H, W)
    return u_new, torch.add(px, ux, alpha=taut).div_(norm), torch.add(py, uy, alpha=taut).div_(norm), error


class DualTVL1:
    """TV-L1 optical flow of a batch of frame pairs, with OpenCV's parameters and defaults.

    Args:
        tau: time step of the dual (Chambolle) iteration.
        lambda_: weight of the data term (smaller: smoother flow).
        theta: coupling of ``u`` and the auxiliary ``v``.
        nscales: pyramid levels.
        warps: warpings of ``I1`` per level.
        epsilon: stopping threshold on the root-mean-square flow update per step.
        inner_iterations: steps per round between two median filterings.
        outer_iterations: rounds per warp.
        scale_step: size ratio of consecutive pyramid levels.
        median_filtering: side of the median filter applied to the flow before each round (1: none).
    """

    def __init__(
        self,
        tau: float = 0.25,
        lambda_: float = 0.15,
        theta: float = 0.3,
        nscales: int = 5,
        warps: int = 5,
        epsilon: float = 0.01,
        inner_iterations: int = 30,
        outer_iterations: int = 10,
        scale_step: float = 0.8,
        median_filtering: int = 5,
    ) -> None:
        self.tau = tau
        self.lambda_ = lambda_
        self.theta = theta
        self.nscales = nscales
        self.warps = warps
        self.epsilon = epsilon
        self.inner_iterations = inner_iterations
        self.outer_iterations = outer_iterations
        self.scale_step = scale_step
        if median_filtering > 1 and median_filtering % 2 == 0:
            raise ValueError(f"median_filtering must be 1 (off) or odd, got {median_filtering}")
        self.median_filtering = median_filtering
        self._median_network = _median_network(median_filtering**2)

    def __call__(self, prev: Tensor, nxt: Tensor) -> Tensor:
        """Flow from ``prev`` to ``nxt``: (N, H, W) frames -> (N, H, W, 2) float32 (x, y) in pixels."""
        if prev.shape != nxt.shape or prev.dim() != 3:
            raise ValueError(f"expected two (N, H, W) batches of the same shape, got {tuple(prev.shape)} and {tuple(nxt.shape)}")
        scale = 1.0 if prev.dtype == torch.uint8 else 255.0
        levels = [(prev.float() * scale, nxt.float() * scale)]  # (N, H, W) each
        for _ in range(1, self.nscales):
            h, w = levels[-1][0].shape[-2:]
            size = (round(h * self.scale_step), round(w * self.scale_step))
            if min(size) < MIN_LEVEL_SIZE:
                break
            step = (1 / self.scale_step, 1 / self.scale_step)
            levels.append(tuple(_resize(image, size, step) for image in levels[-1]))

        n, h, w = levels[-1][0].shape
        u = levels[-1][0].new_zeros((n, 2, h, w))  # (N, 2, h, w): flow x, y
        for i0, i1 in reversed(levels):
            if u.shape[-2:] != i0.shape[-2:]:
                h, w = i0.shape[-2:]
                u = _resize(u, (h, w), (u.shape[-2] / h, u.shape[-1] / w)) / self.scale_step
            u = self._solve_level(i0, i1, u)
        return u.permute(0, 2, 3, 1).contiguous()

    def _solve_level(self, i0: Tensor, i1: Tensor, u: Tensor) -> Tensor:
        """Refine the flow u (N, 2, H, W) on one pyramid level with frames i0, i1 (N, H, W)."""
        images = torch.cat((i1[:, None], _centred_gradient(i1)), dim=1)  # (N, 3, H, W): I1, dI1/dx, dI1/dy
        px, py = torch.zeros_like(u), torch.zeros_like(u)  # dual variables, kept across the warps
        for _ in range(self.warps):
            warped = _warp(images, u)  # (N, 3, H, W)
            i1w, i1w_grad = warped[:, :1], warped[:, 1:]  # (N, 1, H, W), (N, 2, H, W)
            neg_inv_grad_sq = -1 / i1w_grad.square().sum(1, keepdim=True).clamp_min(FLT_EPSILON)  # (N, 1, H, W)
            rho_c = i1w - (i1w_grad * u).sum(1, keepdim=True) - i0[:, None]  # (N, 1, H, W)
            u, px, py = self._iterate(u, px, py, i1w_grad, neg_inv_grad_sq, rho_c)
        return u

    def _iterate(
        self, u: Tensor, px: Tensor, py: Tensor, i1w_grad: Tensor, neg_inv_grad_sq: Tensor, rho_c: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The outer and inner iterations of one warp; a pair leaves the batch once it has converged."""
        threshold = self.epsilon**2 * u.shape[-2] * u.shape[-1]
        constants = dict(l_t=self.lambda_ * self.theta, theta=self.theta, taut=self.tau / self.theta)
        state = [u.clone(), px.clone(), py.clone()]  # results of the whole batch, filled in as pairs converge
        pending = torch.arange(u.shape[0], device=u.device)  # (M,) batch indices of the pairs still iterating
        work = [u, px, py, i1w_grad, neg_inv_grad_sq, rho_c]  # their tensors, (M, ...)
        for _ in range(self.outer_iterations):
            if self.median_filtering > 1:
                work[0] = _median(work[0], self._median_network, self.median_filtering)
            for _ in range(self.inner_iterations):
                *work[:3], error = _primal_dual_step(*work, **constants)
                converged = error <= threshold  # (M,)
                if converged.any():  # OpenCV's stopping rule, per pair
                    for full, part in zip(state, work):
                        full[pending[converged]] = part[converged]
                    pending, work = pending[~converged], [t[~converged] for t in work]
                    if len(pending) == 0:
                        return tuple(state)
        for full, part in zip(state, work):
            full[pending] = part
        return tuple(state)
