"""Perturbation methods on huge images: memory follows the chunk, not the number of perturbations.

Peak memory is read in a fresh process (``ru_maxrss`` before and after the call), so allocations
of other tests cannot hide or inflate it. Small images keep exactly the classic defaults.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import explain
from explain.methods import _features as feat
from explain.methods._common import window_count, window_masks
from explain.methods.occlusion import _defaults

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import resource, sys, time, json
import torch
torch.set_num_threads(1)
import explain

side, channels = int(sys.argv[1]), int(sys.argv[2])

def gap_model(k=4):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, k))

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

m = explain.ModelWrapper(gap_model(), input_kind="image")
x = torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(0))
before, start = peak_mb(), time.perf_counter()
"""


def run_measured(body: str, side: int, channels: int = 3) -> dict:
    """Run ``PRELUDE + body`` in a fresh interpreter; ``body`` leaves a JSON-able dict in ``out``."""
    script = PRELUDE + textwrap.dedent(body) + """
out["grown_mb"] = peak_mb() - before
out["seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script, str(side), str(channels)], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import json
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_occlusion_with_many_windows_on_a_2048px_image_never_holds_all_masks():
    # 128 full-height strips: all masks at once would be 128×2048×2048 bools (512 MiB) beside the chunk
    out = run_measured("""
a = explain.occlusion(m, x, window=(2048, 16), stride=(2048, 16))
v = a.values[0]
out = {"windows": a.params["windows"], "shape": list(v.shape), "finite": bool(torch.isfinite(v).all()),
       "columns_constant": bool((v == v[:1]).all())}
""", 2048, channels=1)
    assert out["windows"] == 128 and out["shape"] == [2048, 2048] and out["finite"]
    assert out["columns_constant"]  # full-height windows: every column has one value
    assert out["grown_mb"] < 600, out
    assert out["seconds"] < 60, out


def test_lime_and_shap_on_a_2048px_image_segment_a_shrunk_copy_and_stay_small():
    out = run_measured("""
a = explain.lime(m, x, n_samples=16, seed=0)
s = explain.shap(m, x, n_samples=16, seed=0)
lime_s = time.perf_counter() - start
from explain.methods import _features as feat
g = feat.image_groups(x)
out = {"lime_shape": list(a.values.shape), "lime_finite": bool(torch.isfinite(a.values).all()),
       "gap": float(s.quality["efficiency_gap"].max()), "segments": int(g.max()) + 1,
       "distinct_values": int(torch.unique(s.values).numel())}
""", 2048)
    assert out["lime_shape"] == [1, 2048, 2048] and out["lime_finite"]
    assert out["gap"] < 1e-4  # KernelSHAP efficiency: Σφ = f(x) − f(baseline), exactly by construction
    assert 16 <= out["segments"] <= feat.MAX_DEFAULT_SEGMENTS
    assert out["distinct_values"] <= out["segments"]  # one value per superpixel: labels were scaled back up
    assert out["grown_mb"] < 1000, out
    assert out["seconds"] < 90, out


def test_default_occlusion_window_keeps_the_classic_8px_on_ordinary_images_and_bounds_windows_on_huge_ones():
    for side in (16, 32, 64, 224):
        w, st = _defaults("image", (side, side), None, None)
        assert w == (min(8, side),) * 2 and st == (max(1, min(8, side) // 2),) * 2
    counts = []
    for size in ((225, 225), (1000, 333), (4096, 4096), (30000, 20000)):
        w, st = _defaults("image", size, None, None)
        counts.append(window_count(size, w, st))
        assert all(a >= 8 for a in w)
    assert max(counts) <= 56 * 56, counts  # 4096²: 8-px windows at stride 4 would be 1,046,529


def test_default_segmentation_is_unchanged_on_small_images_and_bounded_on_huge_ones():
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    from skimage.segmentation import slic
    for i in range(2):  # up to 256 px: SLIC on the image itself, exactly as before
        ref = slic(x[i].permute(1, 2, 0).double().numpy(), n_segments=feat.default_segments(96, 96),
                   compactness=feat.SLIC_COMPACTNESS, start_label=0, channel_axis=-1)
        got = feat.image_groups(x[i:i + 1])[0].numpy()
        # same partition (ids may be renumbered): each reference segment maps to exactly one id
        pairs = set(zip(ref.ravel().tolist(), got.ravel().tolist()))
        assert len(pairs) == len(set(ref.ravel().tolist())) == len(set(got.ravel().tolist()))
    assert feat.default_segments(4096, 4096) == 64
    assert feat.default_segments(16, 4096) <= feat.MAX_DEFAULT_SEGMENTS


def _brute_force_occlusion(net, x, window, stride, baseline=0.0):
    """Independent reference: one forward pass per (input, window), averaged onto covered pixels."""
    n, _, h, w = x.shape
    with torch.no_grad():
        clean = net(x)
        t = clean.argmax(1)
        total = torch.zeros(n, h, w, dtype=torch.float64)
        count = torch.zeros(h, w, dtype=torch.float64)
        top = 0
        while True:
            left = 0
            while True:
                xo = x.clone()
                xo[:, :, top:top + window[0], left:left + window[1]] = baseline
                drop = (clean - net(xo)).gather(1, t[:, None]).squeeze(1).double()
                total[:, top:top + window[0], left:left + window[1]] += drop[:, None, None]
                count[top:top + window[0], left:left + window[1]] += 1
                if left + window[1] >= w:
                    break
                left += stride[1]
            if top + window[0] >= h:
                break
            top += stride[0]
    return total / count


@pytest.mark.parametrize("window,stride,batch_size", [((5, 7), (3, 2), 7), ((8, 8), (4, 4), 1), ((4, 6), (4, 6), 64)])
def test_chunked_occlusion_equals_a_direct_loop_and_captum(window, stride, batch_size):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    x = torch.rand(3, 3, 23, 29, generator=torch.Generator().manual_seed(2))
    m = explain.ModelWrapper(net, input_kind="image")
    a = explain.occlusion(m, x, window=window, stride=stride, batch_size=batch_size)  # chunks cross inputs
    ref = _brute_force_occlusion(net, x, window, stride)
    torch.testing.assert_close(a.values.double(), ref, rtol=1e-4, atol=1e-5)
    if (23 - window[0]) % stride[0] == 0 and (29 - window[1]) % stride[1] == 0:  # no window overhangs
        from captum.attr import Occlusion
        c = Occlusion(net).attribute(x, sliding_window_shapes=(3, *window), strides=(3, *stride), target=a.target)
        torch.testing.assert_close(a.values, c.sum(1) / 3, rtol=1e-4, atol=1e-5)


def test_window_masks_by_index_equal_the_rows_of_the_full_set():
    for size, window, stride in (((23, 29), (5, 7), (3, 2)), ((40,), (6,), (4,)), ((9, 9), (9, 9), (1, 1))):
        full = window_masks(size, window, stride)
        p = window_count(size, window, stride)
        assert full.shape[0] == p
        idx = torch.tensor([p - 1, 0, p // 2, p // 2, 1 % p])
        assert torch.equal(window_masks(size, window, stride, idx), full[idx])
