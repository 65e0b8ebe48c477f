"""Feature visualisation: what a unit or a class of an image model responds to.

:func:`feature_visualization` optimises an input image so that a channel of a layer, or a class
logit, becomes large (Olah et al. 2017, "Feature Visualization", https://distill.pub/2017/feature-visualization/).
To get an image rather than adversarial noise it

* parameterises the image in the Fourier domain with a ``1/f`` spectrum scale (low frequencies move
  first) and maps it into the valid pixel range with a sigmoid, so every iterate is a valid image;
* applies a random jitter / scale / rotation at every step (one ``grid_sample``), so the result
  must work wherever and however large it is drawn;
* adds a total-variation penalty.

:func:`deep_dream` starts from a real image instead and amplifies what a layer already sees in it,
octave by octave (Mordvintsev et al. 2015). Sequence models get the honest analogue,
:func:`explain.dataset_examples`: optimised token ids are not readable, so it shows the real samples
and time windows that drive a channel or class most.

Example:
    >>> fv = explain.feature_visualization(m, classes=[0, 1, 2], steps=128, seed=0, shape=(3, 32, 32))  # doctest: +SKIP
    >>> fv.images.shape, fv.activation       # 3×3×32×32 in [0, 1]; the logit each image reached
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .data import collect
from .errors import InputShapeError
from .feature_results import DatasetExamples, FeatureVisualization
from .methods._common import Timer
from .model import ModelWrapper, check_wrapper
from .dataset_examples import dataset_examples, targets_for

__all__ = ["feature_visualization", "deep_dream", "fourier_image", "total_variation", "FeatureVisualization"]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per sample.

    Shape: ``N×C×H×W`` → ``N``.
    """
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def _spectrum_scale(h: int, w: int, decay: float, device: torch.device) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    freq = torch.sqrt(fx ** 2 + fy ** 2).clamp_min(1.0 / max(h, w))
    # ``1/f`` spectrum; with the orthonormal FFT a unit step of a coefficient moves pixels by about
    # one unit, so Adam's step size is in pixel-logit units whatever the image size.
    return freq.pow(-decay) / freq.pow(-decay).max() * math.sqrt(h * w) / 4


def colour_basis(channels: int, chroma: float, device: torch.device) -> torch.Tensor:
    """``C×C`` map from decorrelated components to channels: for RGB, luminance plus two opponent
    colours (orthonormal) with the colour components damped by ``chroma``; identity otherwise."""
    if channels != 3:
        return torch.eye(channels, device=device)
    basis = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [0.5, -1.0, 0.5]], device=device)
    basis = basis / basis.norm(dim=1, keepdim=True)
    return basis.t() * torch.tensor([1.0, chroma, chroma], device=device)


def fourier_image(spectrum: torch.Tensor, size: Tuple[int, int], scale: torch.Tensor,
                  bounds: Tuple[float, float], colour: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Spectrum parameters (``N×C×H×(W//2+1)×2``) → images in ``bounds`` via ``irfft2``, the colour
    basis (``C×C``, decorrelated components → channels) and a sigmoid."""
    z = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=size, norm="ortho")
    if colour is not None:
        z = torch.einsum("oc,nchw->nohw", colour, z)
    lo, hi = bounds
    return lo + (hi - lo) * torch.sigmoid(4.0 * z)


def _random_transform(x: torch.Tensor, gen: torch.Generator, jitter: float, scale: Tuple[float, float],
                      rotate: float) -> torch.Tensor:
    n, _, h, w = x.shape
    s = torch.empty(n).uniform_(scale[0], scale[1], generator=gen)
    a = torch.empty(n).uniform_(-rotate, rotate, generator=gen) * math.pi / 180
    t = torch.empty(n, 2).uniform_(-jitter, jitter, generator=gen) * 2 / torch.tensor([w, h])
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _objective(wrapper: ModelWrapper, x: torch.Tensor, targets: torch.Tensor, layer: Optional[str],
               kind: str) -> torch.Tensor:
    """Per-sample value being maximised: the class logit, or the channel's mean activation."""
    if kind == "class":
        return wrapper.forward(x).gather(1, targets[:, None].to(x.device))[:, 0]
    with wrapper.capture(layer) as cap:
        wrapper.forward(x)
    act = wrapper.activation_map(cap, x.shape[1] if wrapper.input_kind != "image" else None)
    if kind == "dream":
        return act.float().pow(2).flatten(1).mean(1)
    return act.float().flatten(2).mean(2).gather(1, targets[:, None].to(x.device))[:, 0]


def _kind_and_targets(wrapper: ModelWrapper, channels, classes, layer) -> Tuple[str, torch.Tensor, Optional[str]]:
    if (channels is None) == (classes is None):
        raise InputShapeError("give exactly one of channels=[...] (units of a layer) or classes=[...] (class logits)")
    if classes is not None:
        return "class", targets_for(classes, wrapper.num_classes, "classes"), layer
    name = wrapper.target_layer(layer)[0]
    return "channel", targets_for(channels, None, "channels"), name


def _image_shape(wrapper: ModelWrapper, shape: Optional[Sequence[int]], x_ref: Optional[torch.Tensor]) -> tuple:
    if shape is not None:
        shape = tuple(int(v) for v in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputShapeError(f"shape: expected (C, H, W), got {shape}")
        return shape
    if x_ref is not None:
        return tuple(int(v) for v in x_ref.shape[1:])
    raise InputShapeError("feature_visualization needs the image size: pass shape=(C, H, W) or data=(x, y)")


def feature_visualization(model: Any, *, layer: Optional[str] = None, channels: Optional[Sequence[int]] = None,
                          classes: Optional[Sequence[int]] = None, steps: int = 128, seed: int = 0,
                          lr: float = 0.05, tv: float = 0.1, jitter: float = 1.0,
                          scale: Tuple[float, float] = (0.95, 1.05), rotate: float = 5.0, decay: float = 1.0, chroma: float = 0.5,
                          shape: Optional[Sequence[int]] = None, data: Any = None, examples: int = 4,
                          batch_size: Optional[int] = None) -> FeatureVisualization:
    """Images that maximise channels of a layer or class logits (image models); dataset examples (sequences).

    Args:
        model: an ``explain.ModelWrapper``.
        layer: dotted layer name for ``channels`` (default the wrapper's target layer); with
            ``classes`` the logits are used unless a layer is given.
        channels, classes: the units to visualise (exactly one of the two); one image each, batched.
        steps, lr: Adam steps and step size on the Fourier parameters.
        seed: seeds the initial spectrum and every random transform; the same seed gives the same images.
        tv: weight of the total-variation penalty. jitter (pixels), scale (range), rotate (degrees):
            the random transform applied at every step. decay: the ``1/f^decay`` spectrum scale.
        chroma: RGB images are parameterised as luminance plus two opponent colours; this damps
            the colour components (1 = as strong as luminance).
        shape: ``(C, H, W)`` of the images; default the shape of ``data``'s samples.
        data: real samples; if given, the top-activating ones are returned in ``examples`` (the
            only output for token and series models).
        examples: how many real samples per unit.

    Returns:
        ``FeatureVisualization``: ``images`` (``K×C×H×W`` in the valid range; ``None`` for sequence
        models), ``activation`` reached per unit, ``examples`` (or ``None``), parameters, seconds.

    Raises:
        InputShapeError: neither or both of channels/classes, an unknown index, no image size, or a
            sequence model without ``data``.

    Shape:
        images: ``K×C×H×W`` for ``K`` units.

    Example:
        >>> fv = explain.feature_visualization(m, layer="conv", channels=[0, 5], seed=0, data=(x, y))  # doctest: +SKIP
    """
    wrapper = check_wrapper(model)
    kind, targets, layer = _kind_and_targets(wrapper, channels, classes, layer)
    params = {"steps": int(steps), "seed": int(seed), "lr": lr, "tv": tv, "jitter": jitter, "scale": list(scale),
              "rotate": rotate, "decay": decay, "chroma": chroma}
    with Timer() as timer:
        x_ref = None
        ex = None
        if data is not None:
            x_ref, _ = collect(data)
            wrapper.check_inputs(x_ref, name="data")
            ex = dataset_examples(wrapper, (x_ref, None), layer=layer, **{"channels" if kind == "channel" else "classes":
                                  targets.tolist()}, k=examples)
        if wrapper.input_kind != "image":
            if ex is None:
                raise InputShapeError(f"optimised {wrapper.input_kind} inputs are not readable; pass data=(x, y) to get "
                                      "the top-activating real samples instead (explain.dataset_examples)")
            return FeatureVisualization(images=None, targets=targets, objective=kind, layer=layer,
                                        activation=ex.activation[:, 0].clone(), start_activation=None,
                                        params=params, seconds=timer.seconds, examples=ex)
        c, h, w = _image_shape(wrapper, shape, x_ref)
        gen = torch.Generator().manual_seed(int(seed))
        bounds = tuple(float(v) for v in (wrapper.valid_range or (0.0, 1.0)))
        sc = _spectrum_scale(h, w, decay, wrapper.device)
        basis = colour_basis(c, chroma, wrapper.device)
        spectrum = (torch.randn(len(targets), c, h, w // 2 + 1, 2, generator=gen) * 0.01).to(wrapper.device)
        images, start_act, end_act = [], [], []
        with wrapper.session(grad=True):
            def run(sl: slice):
                spec = spectrum[sl].clone().requires_grad_(True)
                tg = targets[sl]
                opt = torch.optim.Adam([spec], lr=lr)
                with torch.no_grad():
                    first = _objective(wrapper, fourier_image(spec, (h, w), sc, bounds, basis), tg, layer, kind)
                for _ in range(int(steps)):
                    img = fourier_image(spec, (h, w), sc, bounds, basis)
                    value = _objective(wrapper, _random_transform(img, gen, jitter, scale, rotate), tg, layer, kind)
                    loss = -value.sum() + tv * total_variation(img).sum() * value.detach().abs().mean().clamp_min(1.0)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    img = fourier_image(spec, (h, w), sc, bounds, basis)
                    last = _objective(wrapper, img, tg, layer, kind)
                return img.detach().cpu(), first.cpu(), last.cpu()

            for img, first, last in wrapper.batched(run, len(targets), batch_size=batch_size, desc="feature vis"):
                images.append(img)
                start_act.append(first)
                end_act.append(last)
    return FeatureVisualization(images=torch.cat(images), targets=targets, objective=kind, layer=layer,
                                activation=torch.cat(end_act), start_activation=torch.cat(start_act), params=params,
                                seconds=timer.seconds, examples=ex)


def deep_dream(model: Any, x: Any, *, layer: Optional[str] = None, steps: int = 20, lr: float = 0.02,
               octaves: int = 3, octave_scale: float = 1.4, jitter: int = 2, seed: int = 0) -> FeatureVisualization:
    """Amplify what ``layer`` sees in real images: gradient ascent on ``mean(activation²)``, coarse to fine.

    At each octave (the image shrunk by ``octave_scale``, smallest first) the image takes ``steps``
    normalised gradient steps with a random roll of up to ``jitter`` pixels; the detail it gains
    is carried up to the next octave. Pixels stay in the wrapper's valid range.

    Args:
        model: an ``explain.ModelWrapper`` of an image model.
        x: images ``N×C×H×W`` in natural units.
        layer: dotted layer name (default the wrapper's target layer).

    Returns:
        ``FeatureVisualization`` with ``objective="dream"``; ``activation`` / ``start_activation``
        are ``mean(activation²)`` after and before.

    Example:
        >>> dd = explain.deep_dream(m, x[:2], layer="block", seed=0)   # doctest: +SKIP
    """
    wrapper = check_wrapper(model)
    if wrapper.input_kind != "image":
        raise InputShapeError(f"deep_dream works on images; for {wrapper.input_kind} models use explain.dataset_examples")
    name = wrapper.target_layer(layer)[0]
    gen = torch.Generator().manual_seed(int(seed))
    lo, hi = (float(v) for v in (wrapper.valid_range or (0.0, 1.0)))
    with Timer() as timer:
        base = wrapper.prepare(x)
        n, _, h, w = base.shape
        zeros = torch.zeros(n, dtype=torch.long)
        sizes = [(max(4, round(h / octave_scale ** k)), max(4, round(w / octave_scale ** k))) for k in range(octaves)][::-1]
        with wrapper.session(grad=True):
            with torch.no_grad():
                start = _objective(wrapper, base, zeros, name, "dream").cpu()
            detail = torch.zeros_like(base)
            for size in sizes:
                small = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
                img = small + F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
                for _ in range(int(steps)):
                    dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
                    shifted = torch.roll(img, (dy, dx), (2, 3)).detach().requires_grad_(True)
                    _objective(wrapper, shifted, zeros, name, "dream").sum().backward()
                    g = torch.roll(shifted.grad, (-dy, -dx), (2, 3))
                    g = g / g.abs().flatten(1).mean(1).clamp_min(1e-12)[:, None, None, None]
                    img = (img + lr * g).clamp(lo, hi).detach()
                detail = F.interpolate(img - small, size=(h, w), mode="bilinear", align_corners=False)
            out = (base + detail).clamp(lo, hi)
            with torch.no_grad():
                end = _objective(wrapper, out, zeros, name, "dream").cpu()
    return FeatureVisualization(images=out.detach().cpu(), targets=torch.zeros(0, dtype=torch.long), objective="dream",
                                layer=name, activation=end, start_activation=start,
                                params={"steps": steps, "lr": lr, "octaves": octaves, "octave_scale": octave_scale,
                                        "jitter": jitter, "seed": seed}, seconds=timer.seconds)
