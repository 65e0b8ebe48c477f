"""Image corruptions in the spirit of ImageNet-C (Hendrycks & Dietterich, 2019,
https://arxiv.org/abs/1903.12261), for ``N×C×H×W`` pixels in [0, 1]; outputs stay in [0, 1]."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from ._base import Corruption, noise_like, poisson_rows


def gaussian_noise(x, sigma, gen):
    return (x + sigma * noise_like(x, gen)).clamp(0, 1)


def shot_noise(x, photons, gen):
    rate = (x.clamp(0, 1) * photons).cpu()
    return (poisson_rows(rate, gen) / photons).to(x.device, x.dtype).clamp(0, 1)


def gaussian_blur(x, sigma_fraction, gen):
    sigma = max(0.3, sigma_fraction * x.shape[-1])
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect" if radius < x.shape[-1] else "replicate"),
                   k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect" if radius < x.shape[-2] else "replicate"),
                   k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return out.clamp(0, 1)


def brightness(x, delta, gen):
    return (x + delta).clamp(0, 1)


def contrast(x, factor, gen):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def jpeg(x, quality, gen):
    from PIL import Image
    out = []
    for img in x.detach().cpu():
        arr = (img.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
        dec = dec[..., None] if dec.ndim == 2 else dec
        out.append(torch.from_numpy(dec).permute(2, 0, 1))
    return torch.stack(out).to(x.device, x.dtype)


def pixelate(x, factor, gen):
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


IMAGE_CORRUPTIONS = {
    "gaussian_noise": Corruption("gaussian_noise", "image", gaussian_noise, [0.08, 0.12, 0.18, 0.26, 0.38],
                                 "additive Gaussian noise, σ in pixel units"),
    "shot_noise": Corruption("shot_noise", "image", shot_noise, [60, 25, 12, 5, 3], "Poisson photon noise"),
    "gaussian_blur": Corruption("gaussian_blur", "image", gaussian_blur, [0.02, 0.035, 0.05, 0.07, 0.1],
                                "Gaussian blur, σ as a fraction of the image width"),
    "brightness": Corruption("brightness", "image", brightness, [0.1, 0.2, 0.3, 0.4, 0.5], "brighter by +δ"),
    "contrast": Corruption("contrast", "image", contrast, [0.4, 0.3, 0.2, 0.1, 0.05], "contrast scaled by a factor"),
    "jpeg": Corruption("jpeg", "image", jpeg, [25, 18, 15, 10, 7], "JPEG compression at a quality"),
    "pixelate": Corruption("pixelate", "image", pixelate, [0.6, 0.5, 0.4, 0.3, 0.25], "down- and up-sampling"),
}
IMAGE_CORRUPTIONS["blur"] = IMAGE_CORRUPTIONS["gaussian_blur"]
