"""The two-tower network of §3.5 and Figure 2, one tower per device.

    python -m alexnet.model                       # per-layer table, paper profile
    python -m alexnet.model --towers 1            # footnote 2's one-GPU net
    python -m alexnet.model --devices cuda:0,cuda:1 --profile cuda-convnet

Tower i's parameters live on `devices[i]`. The towers exchange activations only
where Figure 2 draws a crossing: at the inputs of conv3, fc6, fc7 and fc8, all
through `alexnet.placement.exchange`.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Mapping, Sequence

import torch
from torch import nn

from .config import PROFILES, AlexNetConfig
from .layers import LocalResponseNorm, PadToCeil, PaperDropout, SameMapNorm
from .placement import DeviceLike, exchange, resolve_devices

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6")
POOL3_SIZE = 6  # §3.5: 13×13 → max-pool 3/2 → 6×6 (also with z=2: 13 → 6)


class Tower(nn.Module):
    """One GPU's half of the net (§3.5): conv1–conv5 (+conv6 for 1 CNN*), fc6, fc7.

    Per tower: conv1 48@11×11/4, conv2 128@5×5, conv3 192@3×3 reading both
    towers' conv2 maps, conv4 192@3×3, conv5 128@3×3, fc6 2048 and fc7 2048 each
    reading both towers. Footnote 2's one-tower net: 48-128-192-192-256, 4096.
    1 CNN* (2012 code, layers-146-2012-2011: conv6a/conv6b): conv6 128@3×3 pad 1
    after pool3, reading both towers' pool3 maps; fc6 reads conv6.

    Order within a block, by profile (§3.5 versus layers-145):
      paper:        conv1 → ReLU → LRN → pool;  conv2 → ReLU → LRN → pool
      cuda-convnet: conv1 → LRN → ReLU → pool;  conv2 → ReLU → LRN → 5×5 norm → pool
    """

    def __init__(self, cfg: AlexNetConfig, device: torch.device):
        super().__init__()
        self.device = device
        self.lrn1_before_relu = cfg.lrn1_before_relu
        w, t = cfg.conv_widths, cfg.towers
        self.pad1 = PadToCeil(11, 4)  # 2012 code: 224 → 55 (3 px of zeros right/bottom)
        self.conv1 = nn.Conv2d(3, w[0], 11, stride=4)
        self.conv2 = nn.Conv2d(w[0], w[1], 5, padding=2)  # own tower only
        self.conv3 = nn.Conv2d(w[1] * t, w[2], 3, padding=1)  # both towers
        # own tower only; without conv4 (§7's ablation) conv5 reads conv3's maps, as many (192) as conv4's
        self.conv4 = nn.Conv2d(w[2], w[3], 3, padding=1) if cfg.conv4 else None
        self.conv5 = nn.Conv2d(w[3], w[4], 3, padding=1)  # own tower only
        self.conv6 = nn.Conv2d(w[4] * t, w[5], 3, padding=1) if cfg.extra_conv6 else None  # both towers
        self.fc6 = nn.Linear(w[-1] * POOL3_SIZE ** 2 * t, cfg.fc_width)  # both towers
        self.fc7 = nn.Linear(cfg.fc_width * t, cfg.fc_width)  # both towers

        self.act = nn.ReLU() if cfg.activation == "relu" else nn.Tanh()
        lrn = dict(size=cfg.lrn_size, alpha=cfg.lrn_alpha, beta=cfg.lrn_beta,
                   k=cfg.lrn_k, alpha_over_size=cfg.lrn_alpha_over_size)
        self.norm1 = LocalResponseNorm(**lrn) if cfg.lrn else nn.Identity()
        self.norm2 = LocalResponseNorm(**lrn) if cfg.lrn else nn.Identity()
        self.norm2b = (SameMapNorm(cfg.samemap_size, cfg.samemap_scale, cfg.samemap_pow)
                       if cfg.lrn and cfg.samemap_norm else nn.Identity())
        self.pool = nn.MaxPool2d(cfg.pool_kernel, cfg.pool_stride)  # §3.4
        self.drop6 = PaperDropout(cfg.dropout)
        self.drop7 = PaperDropout(cfg.dropout)

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 → pool2, reading only this tower's maps."""
        x = self.conv1(self.pad1(x))  # N×48×55×55
        if self.lrn1_before_relu:
            x = self.act(self.norm1(x))  # N×48×55×55
        else:
            x = self.norm1(self.act(x))  # N×48×55×55
        x = self.pool(x)  # N×48×27×27
        x = self.norm2b(self.norm2(self.act(self.conv2(x))))  # N×128×27×27
        return self.pool(x)  # N×128×13×13

    def upper(self, x: torch.Tensor) -> torch.Tensor:
        """conv3 (x: both towers' pool2 maps) → pool3."""
        x = self.act(self.conv3(x))  # N×192×13×13
        if self.conv4 is not None:
            x = self.act(self.conv4(x))  # N×192×13×13
        x = self.act(self.conv5(x))  # N×128×13×13
        return self.pool(x)  # N×128×6×6

    def weight_layers(self) -> dict[str, nn.Module]:
        names = [n for n in CONV_LAYERS if getattr(self, n) is not None] + ["fc6", "fc7"]
        return {n: getattr(self, n) for n in names}


class AlexNet(nn.Module):
    """The whole net: `config.towers` towers on `devices`, and fc8 on devices[0].

    `model(x)` returns the fc8 logits (softmax is in the loss) on devices[0];
    `model.features(x)` the 4096-d last hidden layer (both towers' fc7 after
    ReLU, before dropout), the feature vectors of §6.1 / Figure 4.

    Concurrency: on two GPUs the towers run at the same time by themselves
    (kernel launches do not wait, and `exchange` copies without blocking the
    host). With both towers on one GPU, `tower_streams=True` gives each tower
    its own CUDA stream, so one tower's kernels can fill what the other leaves
    idle (+6% on an H200 in a measurement made before this project's code
    existed). Off by default until measured here on a GPU (`tools/gpu_check.sh`
    tests and times it); ignored elsewhere.
    """

    def __init__(self, config: AlexNetConfig | None = None,
                 devices: Sequence[DeviceLike] | str | None = None, tower_streams: bool = False,
                 weights: Mapping[str, torch.Tensor] | None = None):
        """`weights`: a state dict (a checkpoint's) to hold instead of §5's initial
        weights, which are then never drawn (0.57 s on a 2-core CPU for 61M numbers)
        and leave the global random state as it was."""
        super().__init__()
        self.config = cfg = config if config is not None else AlexNetConfig()
        self.devices = resolve_devices(devices)
        shared_gpu = self.devices[0] == self.devices[1] and self.devices[0].type == "cuda"
        self.streams = ([torch.cuda.Stream(self.devices[0]) for _ in range(cfg.towers)]
                        if tower_streams and shared_gpu and cfg.towers > 1 else None)
        # Built and initialized on the CPU, then moved: the same seed gives the
        # same weights whatever the devices. Given weights, built without storage.
        with torch.device("meta") if weights is not None else contextlib.nullcontext():
            self.towers = nn.ModuleList(Tower(cfg, self.devices[i]) for i in range(cfg.towers))
            self.fc8 = nn.Linear(cfg.last_hidden, cfg.num_classes)  # 2012 code: on GPU 0
        if weights is None:
            self.reset_parameters()
        else:
            self.load_state_dict(weights, assign=True)
        for tower in self.towers:
            tower.to(tower.device)
        self.fc8.to(self.devices[0])

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """§5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6 and fc7
        (`bias_init`; fc6 and fc7 take `fc_bias_init` where a recipe setting gives one), 0
        elsewhere. The 2012 code draws conv3–conv5 from N(0, 0.03). The paper
        gives nothing for 1 CNN*'s conv6; both profiles follow the 2012 code
        (initW 0.03, initB 1: `conv6_init_std`, `conv6_init_bias`)."""
        cfg = self.config
        for tower in self.towers:
            for name, layer in tower.weight_layers().items():
                if name == "conv6":
                    nn.init.normal_(layer.weight, 0.0, cfg.conv6_init_std)
                    nn.init.constant_(layer.bias, cfg.conv6_init_bias)
                    continue
                std = cfg.init_std_conv345 if name in ("conv3", "conv4", "conv5") else cfg.init_std
                nn.init.normal_(layer.weight, 0.0, std)
                fc = name in ("fc6", "fc7") and cfg.fc_bias_init is not None
                one = cfg.fc_bias_init if fc else cfg.bias_init
                nn.init.constant_(layer.bias, one if name in cfg.bias_one_layers else 0.0)
        nn.init.normal_(self.fc8.weight, 0.0, cfg.init_std)
        nn.init.zeros_(self.fc8.bias)

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """conv1 … fc7 (after ReLU, before dropout): one tensor per tower."""
        h = self.per_tower(lambda t, xi: t.lower(xi),
                           [x.to(t.device) for t in self.towers])  # T × N×128×13×13
        h = self.per_tower(lambda t, xi: t.upper(xi),  # T × N×128×6×6
                           [exchange(h, t.device, at="conv3") for t in self.towers])
        if self.config.extra_conv6:  # 1 CNN*: conv6 reads both towers' pool3
            h = self.per_tower(lambda t, xi: t.act(t.conv6(xi)),  # T × N×128×6×6
                               [exchange(h, t.device, at="conv6") for t in self.towers])
        h = [hi.flatten(1) for hi in h]  # T × N×4608
        h = self.per_tower(lambda t, xi: t.drop6(t.act(t.fc6(xi))),  # T × N×2048
                           [exchange(h, t.device, at="fc6") for t in self.towers])
        return self.per_tower(lambda t, xi: t.act(t.fc7(xi)),  # T × N×2048
                              [exchange(h, t.device, at="fc7") for t in self.towers])

    def per_tower(self, fn, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """[fn(tower_i, inputs[i])], each on tower i's stream when `tower_streams`
        is on, following the CUDA semantics notes: side streams wait for the
        current one, tensors crossing streams are recorded on the stream that
        uses them, the current stream waits for the side streams. Autograd runs
        each op's backward on its forward's stream, so the backward overlaps too."""
        if self.streams is None:
            return [fn(t, xi) for t, xi in zip(self.towers, inputs)]
        current = torch.cuda.current_stream(self.devices[0])
        outs = []
        for t, xi, stream in zip(self.towers, inputs, self.streams):
            stream.wait_stream(current)
            with torch.cuda.stream(stream):
                outs.append(fn(t, xi))
            xi.record_stream(stream)
        for out, stream in zip(outs, self.streams):
            current.wait_stream(stream)
            out.record_stream(current)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = [t.drop7(hi) for t, hi in zip(self.towers, self.hidden(x))]  # T × N×2048
        return self.fc8(exchange(h, self.devices[0], at="fc8"))  # N×1000

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return exchange(self.hidden(x), self.devices[0], at="fc8")  # N×4096

    def conv1_kernels(self) -> torch.Tensor:
        """All conv1 kernels, tower 0's first: K×3×11×11 float32 on the CPU (Figure 3)."""
        return torch.cat([t.conv1.weight.detach().float().cpu() for t in self.towers])


def summary(model: AlexNet, batch: int = 1) -> str:
    """Per-layer table (output shape, parameters, device) from a real forward pass."""
    cfg = model.config
    rows: list[tuple[str, str, int, str]] = []
    hooks = []
    named = [(f"tower{i}.{n}", m) for i, t in enumerate(model.towers) for n, m in t.weight_layers().items()]
    for name, module in named + [("fc8", model.fc8)]:
        def hook(mod, inp, out, name=name):
            rows.append((name, "×".join(map(str, out.shape[1:])), sum(p.numel() for p in mod.parameters()),
                         str(next(mod.parameters()).device)))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(batch, 3, cfg.crop_size, cfg.crop_size, device=model.devices[0]))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    order = {name: i for i, (name, _) in enumerate(named + [("fc8", None)])}
    rows.sort(key=lambda r: order[r[0]])
    total = sum(p.numel() for p in model.parameters())
    lines = [f"AlexNet, profile {cfg.profile}, {cfg.towers} tower(s), "
             f"input 3×{cfg.crop_size}×{cfg.crop_size}",
             f"{'layer':<14} {'output (per image)':<20} {'parameters':>12}  device"]
    lines += [f"{n:<14} {s:<20} {p:>12,}  {d}" for n, s, p, d in rows]
    lines.append(f"{'total':<14} {'':<20} {total:>12,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m alexnet.model",
                                 description="Print the per-layer table of the AlexNet of §3.5.")
    ap.add_argument("--profile", choices=PROFILES, default="paper",
                    help="'paper' (the text) or 'cuda-convnet' (the released 2012 code)")
    ap.add_argument("--towers", type=int, choices=(1, 2), default=2,
                    help="2 = the paper's net; 1 = footnote 2's one-GPU net")
    ap.add_argument("--crop-size", type=int, choices=(224, 227), default=224)
    ap.add_argument("--extra-conv6", action="store_true", help="Table 2's 1 CNN* (a sixth conv layer)")
    ap.add_argument("--devices", default=None,
                    help="tower devices, e.g. cuda:0,cuda:1 or cpu (default: two GPUs, one GPU, or CPU)")
    args = ap.parse_args(argv)
    try:
        cfg = AlexNetConfig.from_profile(args.profile, towers=args.towers, crop_size=args.crop_size,
                                         extra_conv6=args.extra_conv6)
        model = AlexNet(cfg, devices=args.devices)
    except ValueError as e:
        ap.error(str(e))
    print(summary(model))


if __name__ == "__main__":
    main()
