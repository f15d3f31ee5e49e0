"""Latent proxies: what the face models would say about a w, predicted from w alone.

The paper's cross steps (identity image != attribute image) need the generator in the loop:
render the mapped w, then ask the recogniser whose face it is and the landmark net where its
features are. On a CPU a render and its backward pass cost about 0.6 s per face, so the e2e
stage sees a few hundred cross pairs in an hour. A store already holds, for every sample, its
w, its identity embedding and its pose and expression scores; a small MLP fitted on them
(:class:`LatentProxy`) predicts both from w in microseconds and passes gradients. The regress
stage uses it for cross steps: ``M(E_id(a), E_attr(b))`` should have ``a``'s identity
embedding and ``b``'s pose and expression, as judged by the proxy. Without it the regress stage
never pairs different faces, and E_attr, which sees the whole face, learns the identity too.

The proxy is fitted once per run, on the training rows only, with its own seed, and saved in
the run folder (``proxy.npz``, format ``facelatent.mapping-proxy``); a resumed run reads it
back instead of refitting. Its held-out accuracy is recorded with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelatent.io import load_npz, save_npz
from facelatent.mapping.model import LatentMLP

__all__ = ["PROXY_ATTRIBUTES", "LatentProxy", "fit_proxy", "load_proxy", "save_proxy"]

FORMAT = "facelatent.mapping-proxy"
# What the attribute face gives: head pose and expression (the landmark loss's job).
PROXY_ATTRIBUTES = ("yaw", "pitch", "roll", "smile_logit", "mouth_open", "eyes_open")


class LatentProxy(nn.Module):
    """w ``[N, w_dim]`` -> (unit identity embedding ``[N, id_dim]``, standardised scores
    ``[N, len(attributes)]``). Reads w whitened by the training rows' mean and spread."""

    def __init__(self, w_dim: int, id_dim: int, attributes: tuple[str, ...],
                 hidden: tuple[int, ...] = (512, 512)) -> None:
        super().__init__()
        self.attributes, self.hidden, self.id_dim = tuple(attributes), tuple(hidden), id_dim
        self.net = LatentMLP(w_dim, self.hidden, id_dim + len(attributes))
        for name, size in (("w_mean", w_dim), ("w_std", w_dim), ("score_mean", len(attributes)),
                           ("score_std", len(attributes))):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def forward(self, w: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net((w - self.w_mean) / self.w_std)
        return F.normalize(out[:, :self.id_dim], dim=1), out[:, self.id_dim:]

    def standardise(self, scores: Tensor) -> Tensor:
        """Raw scores ``[N, K]`` in the units the proxy predicts."""
        return (scores - self.score_mean) / self.score_std


@dataclass
class ProxyFit:
    proxy: LatentProxy
    validation: dict[str, float]      # held-out: identity cosine, R² per attribute


def fit_proxy(w: Tensor, id_codes: Tensor, scores: Tensor, attributes: tuple[str, ...],
              n_train: int, *, steps: int = 3000, batch: int = 256, lr: float = 1e-3,
              seed: int = 0) -> ProxyFit:
    """Fit a :class:`LatentProxy` on rows ``[0, n_train)`` of ``w [N, w_dim]``, ``id_codes
    [N, D]`` and ``scores [N, K]``; the rows after are its validation. Loss: ``1 - cosine``
    of the identity plus the mean squared error of the standardised scores."""
    torch.manual_seed(seed)
    proxy = LatentProxy(w.shape[1], id_codes.shape[1], attributes)
    tw, ts = w[:n_train], scores[:n_train]
    with torch.no_grad():
        proxy.w_mean.copy_(tw.mean(0))
        proxy.w_std.copy_(tw.std(0).clamp_min(1e-6))
        proxy.score_mean.copy_(ts.mean(0))
        proxy.score_std.copy_(ts.std(0).clamp_min(1e-6))
    target = proxy.standardise(scores)
    opt = torch.optim.Adam(proxy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(n_train, (batch,), generator=gen)
        ids, attrs = proxy(w[rows])
        loss = (1 - (ids * id_codes[rows]).sum(1)).mean() + (attrs - target[rows]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    proxy.eval()
    for p in proxy.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        ids, attrs = proxy(w[n_train:])
        val = {"identity_cosine": float((ids * id_codes[n_train:]).sum(1).mean())}
        t = target[n_train:]
        for k, name in enumerate(attributes):
            resid = (attrs[:, k] - t[:, k]).square().mean()
            val[f"r2_{name}"] = float(1 - resid / t[:, k].var().clamp_min(1e-12))
    return ProxyFit(proxy, val)


def save_proxy(path: str | Path, fit: ProxyFit) -> Path:
    meta = {"attributes": list(fit.proxy.attributes), "hidden": list(fit.proxy.hidden),
            "id_dim": fit.proxy.id_dim, "validation": fit.validation}
    arrays: dict[str, Any] = {k: v.numpy() for k, v in fit.proxy.state_dict().items()}
    arrays["meta"] = np.str_(json.dumps(meta))
    return save_npz(path, arrays, format=FORMAT)


def load_proxy(path: str | Path) -> ProxyFit:
    """Read a proxy written by :func:`save_proxy` (`FileFormatError` if it is not one)."""
    from facelatent.errors import FileFormatError

    arrays = load_npz(path, format=FORMAT, max_version=1, kind="a latent proxy (proxy.npz)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        w_dim = arrays["w_mean"].shape[0]
        proxy = LatentProxy(w_dim, int(meta["id_dim"]), tuple(meta["attributes"]),
                            tuple(meta["hidden"]))
        proxy.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{path} is not a complete latent proxy ({exc})") from None
    proxy.eval()
    for p in proxy.parameters():
        p.requires_grad_(False)
    return ProxyFit(proxy, dict(meta.get("validation", {})))
