"""Export a trained checkpoint to take its weights elsewhere.

    python -m tools.export --checkpoint runs/1cnn --to grouped     exports/1cnn-grouped
    python -m tools.export --checkpoint runs/1cnn --to onnx        exports/1cnn-onnx
    python -m tools.export --checkpoint runs/1cnn --to torchscript exports/1cnn-ts

OUT is a folder. Every export writes beside the model `mean.npy` (the
3×256×256 mean image, 0–255 RGB, to subtract before taking the 224 patch),
`classes.json` (index → wnid and name) and `export.json` (what it came from
and the measured agreement):

- `grouped`: one single-device `nn.Module` in the layout Caffe and most later
  code use (conv2, conv4, conv5 with groups=2; conv3 and the fc layers over
  both halves): `grouped.py` (imports only torch), `config.json` (its
  arguments) and `weights.pt` (a plain state dict). Loads without this package;
  alexnet/grouped.py says how.
- `onnx`: `alexnet.onnx` (the grouped module, dynamic batch size).
- `torchscript`: `alexnet.pt` (the grouped module, traced; `torch.jit.load`).

Each export is checked before it is kept: its logits on random inputs, in
eval mode, against the two-tower model's, to 1e-4 (ONNX through onnxruntime
when it is installed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from alexnet import checkpoint, engine, grouped
from alexnet.data.cache import CacheError
from alexnet.grouped import GroupedAlexNet
from alexnet.model import AlexNet
from alexnet.predict import dataset_of

FORMATS = ("grouped", "onnx", "torchscript")
TOLERANCE = 1e-4  # max |logit difference| an export may have


def grouped_config(model: AlexNet) -> dict:
    """GroupedAlexNet's arguments for a two-tower (or one-tower) model."""
    cfg, t = model.config, model.config.towers
    if not cfg.conv4:
        raise ValueError("this checkpoint is the ablation no-conv4 (§7: no conv4 layer); the grouped "
                         "layout, ONNX and TorchScript exports hold the paper's five conv layers")
    lrn = None
    if cfg.lrn:  # F.local_response_norm divides α by the window size
        alpha = cfg.lrn_alpha if cfg.lrn_alpha_over_size else cfg.lrn_alpha * cfg.lrn_size
        lrn = {"size": cfg.lrn_size, "alpha": alpha, "beta": cfg.lrn_beta, "k": cfg.lrn_k}
    samemap = ({"size": cfg.samemap_size, "scale": cfg.samemap_scale, "power": cfg.samemap_pow}
               if cfg.lrn and cfg.samemap_norm else None)
    return {"num_classes": cfg.num_classes, "widths": [w * t for w in cfg.conv_widths[:5]],
            "fc_width": cfg.fc_width * t, "groups": t,
            "conv6_width": cfg.conv_widths[5] * t if cfg.extra_conv6 else 0,
            "pool_kernel": cfg.pool_kernel, "pool_stride": cfg.pool_stride, "activation": cfg.activation,
            "dropout": cfg.dropout, "lrn": lrn, "lrn1_before_relu": cfg.lrn1_before_relu, "samemap": samemap}


@torch.no_grad()
def to_grouped(model: AlexNet) -> tuple[GroupedAlexNet, dict]:
    """The same function as one grouped module on the CPU, in eval mode, and its arguments.

    Each layer's weights are the towers' concatenated along the output
    dimension, tower 0 first (the order in which `placement.exchange`
    concatenates them for the next layer). The paper's test-time dropout
    scaling (× (1 − p) after fc6 and fc7) is folded into fc7's and fc8's weights.
    """
    config = grouped_config(model)
    net = GroupedAlexNet(**config)
    layers = [n for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc6", "fc7")
              if getattr(net, n) is not None]
    keep = 1.0 - model.config.dropout
    for name in layers:
        for part in ("weight", "bias"):
            full = torch.cat([getattr(getattr(t, name), part).detach().float().cpu()
                              for t in model.towers])
            scaled = (name, part) == ("fc7", "weight")  # the test-time dropout scaling, folded in
            getattr(getattr(net, name), part).copy_(full * keep if scaled else full)
    net.fc8.weight.copy_(model.fc8.weight.detach().float().cpu() * keep)
    net.fc8.bias.copy_(model.fc8.bias.detach().float().cpu())
    return net.eval(), config


@torch.no_grad()
def max_difference(model: AlexNet, run, inputs: torch.Tensor) -> float:
    """max |run(inputs) − model(inputs)| over the logits, the model in eval mode."""
    model.eval()
    want = model(inputs.to(model.devices[0])).float().cpu()
    return float((torch.as_tensor(run(inputs)).float() - want).abs().max())


def export(checkpoint_path, to: str, out, cache: str | None = None, samples: int = 4) -> dict:
    """Write the export into folder `out` (replaced only once the export checks out); returns export.json."""
    if to not in FORMATS:
        raise ValueError(f"--to {to}: one of {', '.join(FORMATS)}")
    model, ck, path = engine.load_model(checkpoint_path, devices=("cpu", "cpu"))
    mean, classes = dataset_of(ck, path, cache)
    net, config = to_grouped(model)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    s = model.config.crop_size
    example = torch.zeros(1, 3, s, s)
    # like 0–255 pixels minus the mean
    inputs = torch.randn(samples, 3, s, s, generator=torch.Generator().manual_seed(0)) * 60
    if to == "grouped":
        shutil.copy(grouped.__file__, tmp / "grouped.py")
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        torch.save(net.state_dict(), tmp / "weights.pt")
        check, checked_by = net, "GroupedAlexNet in this process"
    elif to == "torchscript":
        # TorchScript is deprecated in favour of torch.export, but still works; the tracer's warning is
        # about LRN's empty-input check, which no real input takes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.jit.trace(net, example).save(str(tmp / "alexnet.pt"))
            check = torch.jit.load(str(tmp / "alexnet.pt"))
        checked_by = "torch.jit.load of the written file"
    else:
        torch.onnx.export(net, (example,), str(tmp / "alexnet.onnx"), input_names=["patch"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))
        check, checked_by = _onnx_runner(tmp / "alexnet.onnx")
    difference = max_difference(model, check, inputs)
    if difference > TOLERANCE:
        raise RuntimeError(f"the {to} export's logits differ from the two-tower model's by {difference:.2e} "
                           f"(> {TOLERANCE:g}); nothing written to {out}")
    np.save(tmp / "mean.npy", mean.numpy())
    (tmp / "classes.json").write_text(json.dumps(classes, indent=1))
    info = {"format": to, "checkpoint": str(path), "epoch": ck.get("epoch"), "step": ck.get("step"),
            "profile": model.config.profile, "input": f"3×{s}×{s}, 0–255 RGB minus mean.npy's patch",
            "max_logit_difference": difference, "checked_on": f"{samples} random inputs",
            "checked_by": checked_by,
            "code_version": checkpoint.code_version(), "date": time.strftime("%Y-%m-%d")}
    (tmp / "export.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return info


def _onnx_runner(path: Path):
    """A function running the ONNX file with onnxruntime, or the onnx checker's word when it is not
    installed."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("checking an ONNX export needs onnxruntime: pip install onnxruntime") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (lambda x: session.run(None, {"patch": x.numpy()})[0]), f"onnxruntime {onnxruntime.__version__}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT", help="the folder to write (replaced if it exists)")
    ap.add_argument("--checkpoint", required=True, help="a run directory (its newest checkpoint) or a file")
    ap.add_argument("--to", choices=FORMATS, required=True, help="the export format")
    ap.add_argument("--cache", help="the prepared dataset it was trained on (only for checkpoints without a "
                    "mean image)")
    args = ap.parse_args(argv)
    try:
        info = export(args.checkpoint, args.to, args.out, args.cache)
    except (ValueError, CacheError) as e:
        ap.error(str(e))
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.to} export of {info['checkpoint']} → {args.out}: logits within "
          f"{info['max_logit_difference']:.1e} of the two-tower model's ({info['checked_by']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
