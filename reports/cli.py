"""The ``xaiscope`` command line: ``methods``, ``demo``, ``report`` and ``explain``.

Exit codes:

* 0 — the command finished and every configured check passed;
* 1 — a configured check failed (the report is written);
* 2 — a usage or input error: bad options, a missing file, a config value of the wrong type or out
  of range, a model that cannot run on the data (one line on stderr; ``--debug`` shows the traceback);
* 3 — the report is written but a section failed (it shows a failure box); stderr names each failed
  section on one line. It takes precedence over 1: with a section missing, the checks did not all run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_SECTION_FAILED = 0, 1, 2, 3


class UsageError(Exception):
    """A problem with the command line itself."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Version(argparse.Action):
    """``--version``: prints ``xaiscope <version>`` (torch is imported only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import explain
        print(f"xaiscope {explain.__version__}")
        parser.exit(EXIT_OK)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xaiscope", description="Explain and stress-test PyTorch classifiers.")
    p.add_argument("--version", action=_Version, help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("methods", help="list the available methods")

    d = sub.add_parser("demo", help="train small models on bundled real data and write their reports")
    d.add_argument("--out", default="reports-out/demo", help="output folder (default: reports-out/demo)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--methods", default=None, help="comma-separated explainers (default: gradcam,occlusion,lime,shap,integrated_gradients)")
    d.add_argument("--samples", type=int, default=6, help="gallery rows per report")
    d.add_argument("--quiet", action="store_true", help="print only the report paths")
    d.add_argument("--force", action="store_true",
                   help="write the reports into folders that hold other files (never deletes anything)")

    mo = sub.add_parser("monitor", help="render a training history written by reports.Monitor as an HTML page")
    mo.add_argument("history", help="the folder the monitor wrote (e.g. runs/exp1)")
    mo.add_argument("--out", default=None, help="output folder (default: <history>/report)")
    mo.add_argument("--quiet", action="store_true", help="print only the page's path")

    for name, helptext in (("report", "audit a model on data and write an HTML report"),
                           ("explain", "run one explainer on a few inputs and write PNGs"),
                           ("verify", "certify robustness per sample and print a verdict table")):
        r = sub.add_parser(name, help=helptext)
        r.add_argument("--config", help="TOML file with the same keys as these options, plus [checks] etc.")
        r.add_argument("--model", help="'package.module:factory' (with --weights; the working directory is importable), "
                       "a TorchScript, .pt2 or .onnx file, or hf:DIR (a Hugging Face save_pretrained directory)")
        r.add_argument("--weights", help="state dict file, loaded with weights_only=True")
        r.add_argument("--trust-model", action="store_true", help="run code that model files bring (a whole pickled model, pickled .pt2 records, TorchScript file operators, a Hugging Face folder's own code)")
        r.add_argument("--output", default=None, help="which part of the model's output holds the logits when it "
                       "returns a tuple, list or dict: an index (0, 1, ...) or a key name (default: the tensor itself, "
                       "the first element, the 'logits' key or attribute)")
        r.add_argument("--kind", choices=["image", "tokens", "series"],
                       help="input kind (default: what the model or the data says; an error when it cannot tell)")
        r.add_argument("--data", help="image folder (class sub-folders), .pt/.npz tensors, .csv series, or texts "
                       "(.txt one per line, .csv with text[,label] columns; need --model hf:DIR). "
                       "Series CSV: one series per row (label + one column per step), or for several channels "
                       "long format 'sample_id,t,<one column per channel>,label' (one line per sample and step)")
        r.add_argument("--pad-id", type=int, default=None, help="token models: the padding id (default: the "
                       "tokenizer's for hf: models, else 0); padded positions are masked and never perturbed")
        r.add_argument("--mask", default=None, help="token models: the forward argument that receives the attention "
                       "mask (ids != pad id), e.g. attention_mask (default for hf: models), or 'none'")
        r.add_argument("--max-length", type=int, default=None, help="texts: cut token sequences at this length (128)")
        r.add_argument("--vocab", help="token models: file with one word per line (line i = id i)")
        r.add_argument("--class-names", help="'a,b,c' or a file with one name per line")
        r.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406")
        r.add_argument("--std", help="per-channel std")
        r.add_argument("--channels", type=int, default=None, help="image folders: 1 (grey) or 3 (RGB, default)")
        r.add_argument("--image-size", type=int, default=None, help="image folders: resize to this square size")
        r.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
        r.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="autocast precision")
        r.add_argument("--seed", type=int, default=None,
                       help="seeds every stochastic step and turns on the deterministic mode (fixed batch size, "
                            "deterministic kernels): the same seed gives the same numbers, bit for bit")
        r.add_argument("--max-samples", type=int, default=None, help="use at most this many samples")
        r.add_argument("--out", default=None, help="output folder")
        r.add_argument("--quiet", action="store_true", help="no progress output")
        if name == "report":
            r.add_argument("--methods", default=None, help="comma-separated explainers (default: gradcam,occlusion,lime,shap,integrated_gradients)")
            r.add_argument("--samples", type=int, default=None, help="gallery rows (default 6)")
            r.add_argument("--ood-data", default=None, help="out-of-distribution inputs (same formats as --data)")
            r.add_argument("--force", action="store_true",
                           help="write the report into a non-empty folder that is not an earlier report "
                                "(only the report's own files are written; nothing is deleted)")
            r.add_argument("--history", default=None, help="a training history folder (reports.Monitor) for the Training section")
        elif name == "verify":
            r.add_argument("--eps", default=None, help="comma-separated budgets in natural units, e.g. 0,0.004,0.008")
            r.add_argument("--method", default=None, choices=["ibp", "crown", "alpha-crown"], help="bounds (default crown)")
            r.add_argument("--samples", type=int, default=None, help="how many inputs to verify (default 32)")
        else:
            r.add_argument("--method", default="gradcam", help="explainer name (see 'xaiscope methods')")
            r.add_argument("--samples", type=int, default=None, help="how many inputs to explain (default 4)")
    return p


def _settings(args: argparse.Namespace) -> dict:
    """Merge the config file (if any) with the flags; flags win."""
    from ._config import SETTING_RULES, check_settings
    from ._inputs import load_config
    from .build import validate_config
    cfg = load_config(args.config) if getattr(args, "config", None) else {}
    keys = list(SETTING_RULES)
    merged = {k.replace("-", "_"): v for k, v in cfg.items()}
    check_settings(merged)  # values as well as keys, when the file is read: types, ranges, NaN
    validate_config({k: v for k, v in merged.items() if isinstance(v, dict)})
    for k in keys:
        v = getattr(args, k, None)
        if v is not None and v is not False:  # a flag given as 0 (--seed 0) still wins over the file
            merged[k] = v
    for needed in ("model", "data"):
        if not merged.get(needed):
            raise UsageError(f"missing --{needed.replace('_', '-')} (or '{needed}' in the config file)")
    resources = getattr(args, "resources", None)
    if merged.get("seed") is not None and resources is not None:
        import explain  # a seed asks for the same numbers every run: fixed batches, deterministic kernels
        resources.enter_context(explain.deterministic())
    return merged


def _wrapper_and_data(s: dict):
    from ._setup import check_first_batch, size_hint, wrapper_and_data

    wrapper, x, y, vocab = wrapper_and_data(s)
    s["kind"] = wrapper.input_kind
    check_first_batch(wrapper, x, size_hint(s, wrapper, x))  # before any section: a model that cannot run exits 2
    return wrapper, x, y, vocab


def _methods(value) -> Optional[List[str]]:
    if value is None:
        return None
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
    from explain.registry import EXPLAINERS
    unknown = [m for m in items if m not in EXPLAINERS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(EXPLAINERS)}")
    return items


def cmd_methods(_args) -> int:
    from explain.registry import EXPLAINERS
    print("explainers:  " + ", ".join(EXPLAINERS))
    try:
        import robustness.registry as rr
        print("attacks:     " + ", ".join(rr.ATTACKS))
        for kind, table in rr.CORRUPTIONS.items():
            print(f"corruptions ({kind}): " + ", ".join(table))
        print("ood:         " + ", ".join(rr.DETECTORS))
    except ImportError:
        pass
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import run_demo
    start = time.perf_counter()
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    paths = run_demo(args.out, seed=args.seed, methods=_methods(args.methods), samples=args.samples, log=log,
                     force=args.force)
    log(f"demo finished in {time.perf_counter() - start:.0f} s; open these in a browser:")
    for p in paths:
        print(p)
    return EXIT_OK


def cmd_report(args) -> int:
    from ._save import check_output
    from .build import build_report
    s = _settings(args)
    check_output(s.get("out") or "reports-out/report", bool(getattr(args, "force", False)))  # before loading anything
    wrapper, x, y, vocab = _wrapper_and_data(s)
    ood = None
    if s.get("ood_data"):
        from ._setup import more_inputs, same_token_length
        x, ood = same_token_length(wrapper, x, more_inputs(s, wrapper, s["ood_data"]))
    config = {k: v for k, v in s.items() if isinstance(v, dict)}
    out = s.get("out") or "reports-out/report"
    rep = build_report(wrapper, (x, y), ood_data=ood, out=out, methods=_methods(s.get("methods")) or ["gradcam", "occlusion", "lime", "shap", "integrated_gradients"],
                       config=config, max_samples=int(s.get("max_samples") or 256), samples=int(s.get("samples") or 6),
                       seed=int(s.get("seed") or 0), vocab=vocab, force=bool(getattr(args, "force", False)),
                       history=s.get("history"))
    index = Path(out) / "index.html"
    from robustness.distributed import is_main
    if not is_main():  # rank 0 prints and writes; the others only compute
        return report_exit_code(rep)
    if not args.quiet:
        for c in rep.checks:
            print(f"  [{c.status}] {c.text or c.name}", file=sys.stderr)
    for sec in rep.sections:  # also with --quiet: a failed section is an error, not progress
        if sec.error:
            what = " ".join(line.strip() for line in sec.error.strip().splitlines() if line.strip())
            what = what if len(what) <= 300 else what[:299] + "…"
            print(f"xaiscope report: section failed: {sec.id} ({sec.title}): {what}", file=sys.stderr)
    print(index)
    return report_exit_code(rep)


def report_exit_code(rep) -> int:
    """3 when a section failed (the report is written but incomplete), else 1 when a check failed, else 0."""
    if any(sec.error for sec in rep.sections):
        return EXIT_SECTION_FAILED
    return EXIT_CHECK_FAILED if rep.failed else EXIT_OK


def cmd_explain(args) -> int:
    import explain
    from . import figures
    from ._png import to_png
    s = _settings(args)
    method = _methods(s.get("method") or "gradcam")[0]
    out = Path(s.get("out") or f"reports-out/{method}")
    from ._save import check_files, publish
    check_files(out, [])  # a file in the way, a link or an unwritable folder fails before loading anything
    wrapper, x, _y, vocab = _wrapper_and_data(s)
    n = int(s.get("samples") or 4)
    x = x[:n]
    names_out = [f"{method}-sample{i}.png" for i in range(len(x))]
    check_files(out, names_out)  # a wrong or unwritable folder fails before the explainer runs
    attr = explain.run_explainer(method, wrapper, x)
    names = wrapper.class_names
    pngs = {}
    for i in range(len(x)):
        title = f"sample {i}: {method} for class {names[int(attr.target[i])]}"
        if wrapper.input_kind == "image":
            fig = figures.image_row(x[i], [attr.values[i]], [method], title)
        elif wrapper.input_kind == "series":
            fig = figures.series_row(x[i], [attr.values[i]], [method], title)
        else:
            ids = x[i].tolist()
            words = [vocab[t] if vocab and t < len(vocab) else str(t) for t in ids]
            fig = figures.token_strip(words, [attr.values[i]], [method], title)
        pngs[names_out[i]] = to_png(fig)
    for path in publish(out, pngs, group=f"explain-{method}"):  # never through a link, never over a user's file
        print(path)
    return EXIT_OK


def cmd_monitor(args) -> int:
    from .sections.training import history_report
    out = Path(args.out) if args.out else Path(args.history) / "report"
    rep = history_report(args.history, out)
    if not args.quiet:
        sec = rep.sections[0]
        print(f"  {sec.summary.get('epochs', 0)} epoch(s), {sec.summary.get('steps', 0)} step(s) from {args.history}",
              file=sys.stderr)
    print(out / "index.html")
    return EXIT_OK

def cmd_verify(args) -> int:
    import robustness
    s = _settings(args)
    cfg = s.get("verify", {}) if isinstance(s.get("verify"), dict) else {}
    wrapper, x, y, _vocab = _wrapper_and_data(s)
    if y is None:
        raise UsageError("verify needs labelled data")
    from ._setup import _floats
    eps = _floats(s.get("eps"), "eps") or [float(e) for e in cfg.get("eps", [0, 1 / 255, 2 / 255])]
    method = s.get("method") or cfg.get("method", "crown")
    n = int(s.get("samples") or cfg.get("samples") or 32)
    ca = robustness.certified_accuracy(wrapper, (x[:n], y[:n]), eps=eps, method=method, seed=int(s.get("seed") or 0),
                                       progress=None if not args.quiet else False)
    print(f"{ca.n} samples, bounds by {method}, clean accuracy {ca.clean_accuracy:.1%}")
    print(f"{'eps':>10} {'verified':>9} {'violated':>9} {'unknown':>8} {'certified':>10} {'empirical':>10}")
    for e, c, a, k in zip(ca.eps, ca.certified, ca.empirical, ca.counts):
        print(f"{e:>10.5g} {k['verified']:>9} {k['violated']:>9} {k['unknown']:>8} {c:>10.1%} {a:>10.1%}")
    limit = s.get("checks", {}).get("min_certified_accuracy") if isinstance(s.get("checks"), dict) else None
    limit = cfg.get("min_certified_accuracy", limit)
    if limit is not None and ca.certified[-1] < float(limit):
        print(f"  [fail] certified accuracy @ eps={ca.eps[-1]:g}: {ca.certified[-1]:.0%} < {float(limit):.0%}",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _rank_prefix() -> str:
    """``"rank 1 of 3: "`` inside a process group, else nothing."""
    from robustness.distributed import rank_and_world
    rank, world = rank_and_world()
    return f"rank {rank} of {world}: " if world > 1 else ""


COMMANDS = {"monitor": cmd_monitor, "methods": cmd_methods, "demo": cmd_demo, "report": cmd_report, "explain": cmd_explain,
            "verify": cmd_verify}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``xaiscope`` console script."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code or 0)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="xaiscope: %(message)s")
    import warnings
    from ._warnings import show_one_line
    shown_before, warnings.showwarning = warnings.showwarning, show_one_line  # one line each, no source line
    if getattr(args, "quiet", False):
        import os
        os.environ.setdefault("TQDM_DISABLE", "1")
    from explain.errors import ToolkitError
    args.resources = contextlib.ExitStack()  # what a command enters (deterministic mode) ends with it
    try:
        if args.command == "report":
            from robustness.distributed import init_from_env
            init_from_env()  # under torchrun: join the process group; a plain run: nothing happens
        return COMMANDS[args.command](args)
    except (UsageError, ToolkitError, OSError) as error:
        if args.debug:
            raise
        if getattr(error, "secondary", False):  # another process failed first and reports its own error
            return EXIT_USAGE
        from robustness.distributed import active, announce_failure
        if active():
            announce_failure()  # the other ranks stop waiting for this one
        print(f"xaiscope {args.command}: error: {_rank_prefix()}{error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xaiscope: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown_before
        args.resources.close()
        _leave_group()


def _leave_group() -> None:
    """Leave the process group (if this run joined one) so the other ranks see a closed peer at once."""
    import torch.distributed as td
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
