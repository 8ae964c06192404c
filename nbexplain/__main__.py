"""``python -m nbexplain``: the command line.

    python -m nbexplain audit MODEL_SPEC DATA --out DIR [--engine ray] [--target predicted|label|K]
                              [--config fast|default|thorough|k=v,...] [--actors N] [--cpus-per-actor C]
                              [--gpus-per-actor G] [--address ADDR] [--num-cpus N] [--chunk N] [--seed S]
                              [--no-circuits]
    python -m nbexplain demo [...]          (the same as python -m nbexplain.demo)

``audit`` explains every image of DATA with the model of MODEL_SPEC into the run folder DIR
(run it again and a killed audit resumes), then prints its groups, most suspicious first.
Submitted as a Ray job (``ray job submit -- python -m nbexplain audit ... --engine ray``) it
runs on that cluster: Ray's own ``RAY_ADDRESS`` says where, or ``--address``.

MODEL_SPEC: a zoo name (honest, shortcut, efficientnet_lite0); the path of a TorchScript file,
of a whole model saved with ``torch.save`` or of a zoo weight file; or ``module:function``
returning an ``nn.Module`` or a zoo model. DATA: a folder of images (class sub-folders give the
labels); ``scenes:n=60,seed=0`` or ``shortcut-mix:n=60,seed=0``, the bundled generated sets
(``nbexplain.datasets.make_scenes``, ``nbexplain.datasets.shortcut_mix``, with their keywords);
or ``module:function`` returning anything ``nbexplain.audit`` accepts. A spec that cannot be
read exits with status 2 and one line saying why.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from pathlib import Path

_FUNCTION_SPEC = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")
GENERATED = ("scenes", "shortcut-mix")
_TABLE_COLUMNS = ["target_name", "size", "suspicion", "transplant", "transplant_control", "same_place", "off_object", "accuracy",
                  "mean_area"]


class SpecError(ValueError):
    """A MODEL_SPEC, DATA or option that cannot be read (exit status 2)."""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _audit(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nbexplain", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="explain a real photo with a real model (python -m nbexplain.demo --help)")
    a = sub.add_parser("audit", help="explain every image of a dataset, group them by evidence, test each group",
                       description="Explain every image of DATA, group the images decided by the same evidence, "
                                   "test each group for a shortcut; resumable.")
    a.add_argument("model", metavar="MODEL_SPEC",
                   help="zoo name (honest, shortcut, efficientnet_lite0), a .pt file (TorchScript, a whole "
                        "torch.save'd model or a zoo weight file), or module:function returning the model")
    a.add_argument("data", metavar="DATA",
                   help="folder of images (class sub-folders give labels), scenes:n=60,seed=0, "
                        "shortcut-mix:n=60,seed=0, or module:function returning the data")
    a.add_argument("--out", required=True, metavar="DIR", help="run folder (run again to resume)")
    a.add_argument("--engine", choices=["local", "ray"], default="local")
    a.add_argument("--target", default="predicted", metavar="predicted|label|K",
                   help="explain the predicted class (default), the label, or class index K")
    a.add_argument("--config", default="fast", metavar="PRESET|k=v,...",
                   help="explainer preset (fast, default, thorough) and/or options, e.g. 'fast,steps=10' "
                        "(options alone change the fast preset)")
    a.add_argument("--actors", type=int, default=None, metavar="N", help="Ray actors (default: as CPUs allow)")
    a.add_argument("--cpus-per-actor", type=float, default=1, metavar="C")
    a.add_argument("--gpus-per-actor", type=float, default=0, metavar="G")
    a.add_argument("--address", default=None, metavar="ADDR", help="Ray cluster to join (default: RAY_ADDRESS or a "
                                                                   "local cluster)")
    a.add_argument("--num-cpus", type=int, default=None, metavar="N", help="CPUs of the local Ray cluster started")
    a.add_argument("--chunk", type=int, default=16, metavar="N", help="images per shard (and per Ray task)")
    a.add_argument("--seed", type=int, default=0, metavar="S")
    a.add_argument("--no-circuits", dest="circuits", action="store_false", help="skip the circuits (faster)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _audit(args) -> int:
    from .audits import ManifestMismatch, audit
    from .audits.data import as_audit_data
    from .audits.engines import RayEngineError

    try:
        model = load_model_spec(args.model)
        data = load_data_spec(args.data)
        config = parse_config(args.config)
        target = parse_target(args.target)
        if args.chunk < 1:
            raise SpecError(f"--chunk must be at least 1, got {args.chunk}")
        if args.actors is not None and args.actors < 1:
            raise SpecError(f"--actors must be at least 1, got {args.actors}")
        try:
            data = as_audit_data(data)  # refused kinds of data are a bad DATA, said in one line
        except (TypeError, ValueError) as err:
            raise SpecError(f"DATA {args.data}: {err}") from err
        if target == "label" and data.label(0) is None:
            raise SpecError(f"--target label needs labelled data; {args.data} has no labels")
    except (SpecError, ImportError, FileNotFoundError) as err:
        return _fail(err)
    try:
        result = audit(model, data, out=args.out, target=target, config=config, circuits=args.circuits,
                       seed=args.seed, engine=args.engine, chunk=args.chunk, actors=args.actors,
                       cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                       address=args.address, num_cpus=args.num_cpus, progress=not args.quiet, gallery=False)
    except (ManifestMismatch, ImportError) as err:
        return _fail(err)
    except RayEngineError as err:
        return _fail(err, status=1)
    print(format_groups(result))
    print(f"store: {Path(result.store.root).resolve()} ({len(result)} images; reopen with "
          f"nbexplain.Audit.load({str(result.store.root)!r}))")
    return 0


def _fail(err: BaseException, status: int = 2) -> int:
    text = " ".join(str(err).split()) or type(err).__name__
    print(f"nbexplain audit: {text}", file=sys.stderr)
    return status


def format_groups(result) -> str:
    """The group table, most suspicious first, as text."""
    import pandas as pd

    table = result.group_table
    errors = int(result.table["error"].notna().sum())
    head = (f"{len(result)} images ({errors} could not be explained), {len(result.groups)} groups, "
            "most suspicious first:")
    if table.empty:
        return head + "\n  (no groups)"
    cols = [c for c in _TABLE_COLUMNS if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        return head + "\n" + table[cols].to_string(float_format=lambda v: f"{v:.2f}")


# -- specs ------------------------------------------------------------------------------------
def load_model_spec(spec: str):
    """A zoo name, a model file, or ``module:function`` -> an ``nn.Module`` or a zoo model."""
    import torch

    from .zoo import MODEL_NAMES, PRETRAINED_NAMES, ZooModel, load_model

    names = MODEL_NAMES + PRETRAINED_NAMES
    if spec in names:
        try:
            return load_model(spec)
        except ImportError as err:
            raise SpecError(f"zoo model {spec!r} needs packages that are missing: {err}") from err
    path = Path(spec)
    if path.is_file():
        return _load_model_file(path)
    if _FUNCTION_SPEC.match(spec):
        model = _call_spec(spec, "MODEL_SPEC")
        if not isinstance(model, (torch.nn.Module, ZooModel)):
            raise SpecError(f"{spec} returned a {type(model).__name__}, not an nn.Module or a zoo model")
        return model
    if path.suffix or "/" in spec or "\\" in spec:
        raise SpecError(f"model file {spec} does not exist")
    raise SpecError(f"unknown MODEL_SPEC {spec!r}: give a zoo name ({', '.join(names)}), a .pt file, "
                    "or module:function")


def _load_model_file(path: Path):
    import torch

    from .zoo import ZooModel
    from .zoo.loading import load_weights_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation note
            torch.jit.load(str(path), map_location="cpu")
    except Exception:  # not TorchScript: a pickle of torch.save
        pass
    else:
        raise SpecError(f"{path} is a TorchScript model, which cannot be explained: nbexplain reads activations "
                        "through forward hooks, and TorchScript modules take none; give the eager model "
                        "(torch.save(model, path), or module:function)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)  # a whole model is a pickle: trusted files only
    except Exception as err:
        raise SpecError(f"cannot read the model file {path}: {type(err).__name__}: {err}") from err
    if isinstance(obj, dict) and "state_dict" in obj and "meta" in obj:
        return load_weights_file(path)
    if isinstance(obj, ZooModel):
        return obj
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        raise SpecError(f"{path} holds a state_dict, not a model: save the whole model (torch.save(model, ...)), "
                        "a TorchScript file, or give module:function that builds the model and loads it")
    raise SpecError(f"{path} holds a {type(obj).__name__}, not a model")


def load_data_spec(spec: str):
    """A folder, ``scenes:...``, ``shortcut-mix:...`` or ``module:function`` -> what ``audit`` accepts."""
    name, _, rest = spec.partition(":")
    if name in GENERATED and not Path(spec).exists():
        from .config import parse_options
        from .datasets import make_scenes, shortcut_mix

        try:
            kwargs = parse_options(rest) if rest.strip() else {}
        except ValueError as err:
            raise SpecError(f"DATA {spec!r}: {err}") from err
        kwargs.setdefault("n", 60)
        make = make_scenes if name == "scenes" else shortcut_mix
        try:
            return make(**kwargs)
        except (TypeError, ValueError) as err:
            raise SpecError(f"DATA {spec!r}: {err}") from err
    path = Path(spec)
    if path.is_dir():
        return str(path)
    if path.exists():
        raise SpecError(f"DATA {spec} is a file; give a folder of images")
    if _FUNCTION_SPEC.match(spec):
        return _call_spec(spec, "DATA")
    raise SpecError(f"unknown DATA {spec!r}: give a folder of images, scenes:n=60,seed=0, "
                    "shortcut-mix:n=60,seed=0, or module:function")


def _call_spec(spec: str, what: str):
    module_name, function_name = _FUNCTION_SPEC.match(spec).groups()
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # module:function from the folder the command runs in
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SpecError(f"{what} {spec}: cannot import {module_name}: {err}") from err
    function = getattr(module, function_name, None)
    if not callable(function):
        raise SpecError(f"{what} {spec}: {module_name} has no function {function_name}")
    return function()


def parse_config(text: str):
    """``fast``, ``default,steps=10`` or ``steps=10`` (on the fast preset) -> an ExplainConfig."""
    from .config import PRESETS, ExplainConfig, parse_options

    head, sep, tail = text.partition(",")
    preset, options = (head.strip(), tail) if "=" not in head else ("fast", text)
    if preset not in PRESETS:
        raise SpecError(f"--config: unknown preset {preset!r}; choose from {sorted(PRESETS)} (then ,k=v options)")
    try:
        return ExplainConfig.preset(preset, **(parse_options(options) if options.strip() else {}))
    except (TypeError, ValueError) as err:
        raise SpecError(f"--config {text!r}: {err}") from err


def parse_target(text: str):
    if text in ("predicted", "label"):
        return text
    try:
        k = int(text)
    except ValueError:
        raise SpecError(f"--target must be predicted, label or a class index, got {text!r}") from None
    if k < 0:
        raise SpecError(f"--target: a class index is >= 0, got {k}")
    return k


if __name__ == "__main__":
    sys.exit(main())
