"""The PyTorch side of the torch benchmarks (the ``bench`` extra; torch is imported lazily, so this
module imports without it): flax zoo models copied to ``torch.nn.Sequential`` and back, a copy of
``torchattacks.PGD``'s loop, and full float32 arithmetic on both sides."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.core import models

__all__ = ["to_torch", "nchw", "from_torch", "TorchPGD", "full_fp32"]


def to_torch(model, variables):
    """A ``torch.nn.Sequential`` computing the same logits as the flax ``model`` (NCHW input).

    Supports :class:`jaxdyn.core.models.MLP` and :class:`jaxdyn.core.models.CNN` (the ``mlp*`` and ``cnn*``
    zoo models).
    """
    import torch  # noqa: PLC0415 (the bench extra: optional)
    from torch import nn  # noqa: PLC0415 (the bench extra: optional)

    params = variables["params"]

    def t(a):
        return torch.from_numpy(np.array(a, np.float32))

    layers = []
    if isinstance(model, models.MLP):
        names = ["first"] + [f"Dense_{i}" for i in range(len(model.features) - 1)] + ["head"]
        layers.append(nn.Flatten())  # one channel: (c, h, w) and (h, w, c) orders coincide
        for i, name in enumerate(names):
            k = params[name]["kernel"]
            lin = nn.Linear(k.shape[0], k.shape[1], bias=model.use_bias)
            lin.weight.data = t(k).T.contiguous()
            if model.use_bias:
                lin.bias.data = t(params[name]["bias"])
            layers.append(lin)
            if i < len(names) - 1:
                layers.append(nn.ReLU())
    elif isinstance(model, models.CNN):
        i = 0
        hw, c = 28, 1
        for stage in model.stages:
            for ch in stage:
                p = params[f"Conv_{i}"]
                conv = nn.Conv2d(c, ch, 3, padding=1)  # flax SAME, stride 1
                conv.weight.data = t(p["kernel"]).permute(3, 2, 0, 1).contiguous()
                conv.bias.data = t(p["bias"])
                layers += [conv, nn.ReLU()]
                c, i = ch, i + 1
            layers.append(nn.AvgPool2d(2))
            hw //= 2
        layers.append(nn.Flatten())
        k = np.asarray(params["head"]["kernel"], np.float32)  # rows in (h, w, c) order
        k = k.reshape(hw, hw, c, -1).transpose(2, 0, 1, 3).reshape(hw * hw * c, -1)
        head = nn.Linear(k.shape[0], k.shape[1])
        head.weight.data = torch.from_numpy(np.ascontiguousarray(k.T))
        head.bias.data = t(params["head"]["bias"])
        layers.append(head)
    else:
        raise ValueError(f"no PyTorch converter for {type(model).__name__} (supported: MLP, CNN)")
    return nn.Sequential(*layers).eval()


def nchw(x):
    import torch  # noqa: PLC0415 (the bench extra: optional)

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def from_torch(model, tmodel, variables):
    """The inverse of :func:`to_torch`: ``variables`` (a template of the same model, e.g. the
    initial weights) with every parameter replaced by the current one of ``tmodel`` (float32).
    Used to evaluate a PyTorch-trained copy with jaxdyn's evaluation, so both sides of a
    comparison are measured by the same code."""
    mods = [m for m in tmodel if hasattr(m, "weight")]
    params = variables["params"]
    new = {}

    def a(t):
        return np.asarray(t.detach().cpu().numpy(), np.float32)

    if isinstance(model, models.MLP):
        names = ["first"] + [f"Dense_{i}" for i in range(len(model.features) - 1)] + ["head"]
        for name, lin in zip(names, mods, strict=True):
            new[name] = {"kernel": a(lin.weight).T.copy()}
            if model.use_bias:
                new[name]["bias"] = a(lin.bias)
    elif isinstance(model, models.CNN):
        convs, head = mods[:-1], mods[-1]
        for i, conv in enumerate(convs):
            new[f"Conv_{i}"] = {"kernel": a(conv.weight).transpose(2, 3, 1, 0).copy(), "bias": a(conv.bias)}
        k_old = np.asarray(params["head"]["kernel"])
        c = convs[-1].weight.shape[0]
        hw = int(round((k_old.shape[0] // c) ** 0.5))
        k = a(head.weight).T  # rows in (c, h, w) order
        new["head"] = {"kernel": k.reshape(c, hw, hw, -1).transpose(1, 2, 0, 3).reshape(hw * hw * c, -1).copy(),
                       "bias": a(head.bias)}
    else:
        raise ValueError(f"no PyTorch converter for {type(model).__name__} (supported: MLP, CNN)")
    if set(new) != set(params):
        raise ValueError(f"parameter names differ: {sorted(new)} vs {sorted(params)}")
    out = dict(variables)
    out["params"] = jax.tree.map(lambda old, n: jnp.asarray(n, old.dtype), dict(params), new)
    return out


class TorchPGD:
    """The loop of ``torchattacks.PGD.forward`` (3.5.1: random start, sign step, projection, clip to
    [0, 1], mean cross-entropy), for a host that has torch but not torchattacks (the device
    machine). Same attributes ``eps`` / ``alpha``; used only when torchattacks is missing, and
    then the JSON says so."""

    def __init__(self, model, eps, alpha, steps, random_start=True):
        self.model, self.eps, self.alpha, self.steps, self.random_start = model, eps, alpha, steps, random_start

    def __call__(self, images, labels):
        import torch  # noqa: PLC0415 (the bench extra: optional)
        import torch.nn.functional as F  # noqa: PLC0415 (the bench extra: optional)

        given_training = self.model.training
        self.model.eval()
        images = images.clone().detach()
        adv = images.clone().detach()
        if self.random_start:
            adv = torch.clamp(adv + torch.empty_like(adv).uniform_(-self.eps, self.eps), 0, 1).detach()
        for _ in range(self.steps):
            adv.requires_grad = True
            cost = F.cross_entropy(self.model(adv), labels)
            grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
            adv = adv.detach() + self.alpha * grad.sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1).detach()
        self.model.train(given_training)
        return adv


def full_fp32(torch=None) -> str:
    """Make both libraries compute float32 matrix products in full float32 (no TF32) and return
    the setting's name for the JSON. On recent NVIDIA GPUs both JAX and PyTorch (cuDNN) default to
    TF32 for float32 products (about 1e-3 relative), so the flax and PyTorch copies of a model
    would disagree by more than rounding and the two sides would not run the same arithmetic.
    On CPU this changes nothing."""
    jax.config.update("jax_default_matmul_precision", "highest")
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return "float32, full precision (TF32 off in JAX and PyTorch)"
