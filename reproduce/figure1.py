"""Figure 1: ReLU versus tanh in "a four-layer convolutional neural network" on CIFAR-10, and §3.3's
CIFAR-10 row (the same net with and without normalization).

The paper gives no layer list. Stand-in, named as such: the 2012 code's CIFAR-10 net
`layers-cifar/layers-18pct.cfg` (reproduce/PAPER.md, Figures): conv 32@5×5 pad 2 → max-pool 3/2 → act →
norm; conv 32@5×5 pad 2 → act → avg-pool 3/2 → norm; conv 64@5×5 pad 2 → act → avg-pool 3/2; fc 10.
Pools round up as cuda-convnet does (32 → 16 → 8 → 4). Norm: §3.3's normalization across maps
(k = 2, n = 5, α = 1e-4, β = 0.75, alexnet.layers.LocalResponseNorm), or with `--norm same-map` the
2012 code's same-map one (3×3, scale 5e-5, pow 0.75, layer-params-18pct). "No regularization of any
kind" (§3.1): no weight decay, no dropout, no augmentation. Each step is `alexnet.engine.train_step`,
the step AlexNet trains with, with §5's update rule.

Steps, not epochs. A net's training error at a step is its error on the batches of the last
TRAIL_IMAGES images it trained on (a trailing window, as the paper's curves are the error over each
epoch's batches); its time to 25% is the first step where that is at most 25%.

"The learning rates for each network were chosen independently to make training as fast as
possible": for each activation, rates of a 1-2-5 ladder race on seed 0 (`search`): they train side
by side, every rate still above 25% at the step the first one reaches it is stopped, and the ladder
is walked past whichever end holds the fastest until it is inside. Seeds 1..n then train at the
chosen rate (the search seed is not measured: no winner's luck in the numbers). ReLU runs first; tanh
gets a window of `window` times ReLU's steps (geometric mean over its seeds), so the ratio it can
measure, `max_ratio`, is the window over ReLU's steps; a tanh run still above 25% there counts at the
window's end, and its ratio is a lower bound. No run trains past `steps`.

§3.3's pair: Figure 1's ReLU net with and without its two normalization layers, the same seeds
(same initial weights and batches: paired), at ReLU's chosen rate, for PAIR_STEPS times ReLU's
steps to 25%; the top-1 error on the test (validation) images of each.

Data: CIFAR-10 from a torchvision folder (`--cifar DIR`, python pickle format, no download), or a
prepared cache's training images shrunk to 32×32, at most `--max-images` (a fixed subset of a larger
set), labelled as what they are. It trains on the GPU when there is one.

    python -m reproduce.figure1 --cache cache/synthetic-g4 --out figure1.json --scale cpu-full
    python -m reproduce.figure1 --cifar data/cifar10 --out figure1.json --scale gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import alexnet.engine
import alexnet.layers
import alexnet.optim
from alexnet.atomic import write_text
from alexnet.checkpoint import code_version
from alexnet.config import AlexNetConfig
from alexnet.data.cache import Cache
from alexnet.engine import train_step
from alexnet.layers import LocalResponseNorm, SameMapNorm
from alexnet.optim import PaperSGD
from alexnet.speed import Speed

from .experiments import SCALES
from .stats import compare

TARGET_ERROR = 0.25  # Figure 1: "to reach 25% training error"
PAPER_RATIO = 6  # "six times faster than an equivalent network with tanh neurons"
PAPER_NORM = 2.0  # §3.3: "13% test error rate without normalization and 11% with"
TRAIL_IMAGES = 512  # a step's training error: over the batches of the last 512 images
SEARCH_SEED = 0  # the rates race on this seed; the measured seeds are 1..n
PAIR_STEPS = 2  # §3.3's pair trains for this many times ReLU's steps to 25%
LRN = AlexNetConfig()  # §3.3's k, n, α, β, as the paper's profile has them
NORMS = {  # the normalization layers of Figure 1's net
    "across-maps": lambda: LocalResponseNorm(LRN.lrn_size, LRN.lrn_alpha, LRN.lrn_beta, LRN.lrn_k,
                                             LRN.lrn_alpha_over_size),  # §3.3, the text's
    "same-map": lambda: SameMapNorm(3, 5e-5, 0.75),  # 2012 code, layer-params-18pct rnorm1/2
}


class FourLayerNet(nn.Module):
    def __init__(self, activation: str = "relu", num_classes: int = 10, norm: str | None = "across-maps"):
        super().__init__()
        act = nn.ReLU if activation == "relu" else nn.Tanh
        normed = NORMS[norm] if norm else nn.Identity  # §3.3's pair: with, without
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), act(),  # N×32×16×16
            normed(),
            nn.Conv2d(32, 32, 5, padding=2), act(), nn.AvgPool2d(3, 2, ceil_mode=True),  # N×32×8×8
            normed(),
            nn.Conv2d(32, 64, 5, padding=2), act(), nn.AvgPool2d(3, 2, ceil_mode=True),  # N×64×4×4
            nn.Flatten(), nn.Linear(64 * 4 * 4, num_classes))  # N×10
        stds = iter((1e-4, 0.01, 0.01, 0.01))  # layers-18pct initW
        for m in self.body:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, next(stds))
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.body(x)


CIFAR_SIZE = 50_000  # CIFAR-10's training set: the most images Figure 1 takes from a cache


def load_data(cache: str | None = None, cifar: str | None = None, limit: int = CIFAR_SIZE,
              split: str = "train") -> tuple[torch.Tensor, torch.Tensor, str]:
    """A split's images as N×3×32×32 uint8 and labels, and what they are ("val": CIFAR-10's test
    batch, or the cache's validation split). From a cache: at most `limit` images (a fixed random subset
    when it has more), each decoded and shrunk on its own, so memory is bounded by the subset (150 MB at
    50,000), not by the dataset."""
    if cifar:
        from torchvision.datasets import CIFAR10
        ds = CIFAR10(cifar, train=split == "train", download=False)
        return torch.as_tensor(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets), "CIFAR-10"
    c = Cache(cache)
    n = c.size(split)
    rows = np.sort(np.random.default_rng(0).permutation(n)[:limit]) if n > limit else np.arange(n)
    x = np.empty((len(rows), 32, 32, 3), np.uint8)
    for j, i in enumerate(rows):
        x[j] = np.asarray(Image.open(io.BytesIO(c.read(split, int(i)))).convert("RGB").resize((32, 32),
                                                                                            Image.BILINEAR))
    what = "the embedded synthetic set" if "synthetic" in c.root.name else c.root.name
    images = "training images" if split == "train" else f"{split} images"
    subset = f"a fixed subset of {len(rows):,} of its {n:,} {images}" if n > limit else \
        f"its {n:,} {images}"
    return (torch.from_numpy(x).permute(0, 3, 1, 2), torch.as_tensor(c.labels(split)[rows]),
            f"{what} ({c.root.name}; {subset}) at 32×32, not CIFAR-10")


def centred(x: torch.Tensor, device, mean: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images → float32 on `device`, minus the per-pixel mean (theirs, or the training set's)."""
    x = x.to(device).float()
    return x - (x.mean(dim=0) if mean is None else mean)


class Training:
    """One net of Figure 1, trained a few steps at a time: batches of `batch` from a fresh permutation
    of the images each epoch (the last incomplete batch dropped), drawn from the seed, which also draws
    the initial weights. `error` holds each step's training error."""

    def __init__(self, x, y, activation: str, lr: float, seed: int, norm: str | None = "across-maps",
                 batch: int = 32):
        torch.manual_seed(seed)
        self.net = FourLayerNet(activation, int(y.max()) + 1, norm).to(x.device)
        self.opt = PaperSGD(self.net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
        self.x, self.y, self.batch, self.lr = x, y, min(batch, len(y)), lr
        self.order = torch.Generator().manual_seed(seed)
        self.batches: list = []
        self.trail = max(1, round(TRAIL_IMAGES / self.batch))  # steps in the trailing window
        self.error: list[float] = []
        self.reached: int | None = None  # the step where the trailing error first reached 25%
        self.diverged = False

    @property
    def steps(self) -> int:
        return len(self.error)

    def trailing(self) -> float:
        """The training error over the last `trail` steps (1 before the first step)."""
        last = self.error[-self.trail:]
        return sum(last) / len(last) if last else 1.0

    def done(self, until: int) -> bool:
        return self.reached is not None or self.diverged or self.steps >= until

    def _batch(self) -> torch.Tensor:
        if not self.batches:
            order = torch.randperm(len(self.y), generator=self.order).to(self.x.device)
            self.batches = list(order.split(self.batch))[:len(self.y) // self.batch][::-1]
        return self.batches.pop()

    def advance(self, until: int, stop: bool = True, chunk: int = 25) -> None:
        """Train to step `until`; with `stop`, not past the step that reaches 25% (or a non-finite
        loss). One host sync per `chunk` steps."""
        while not (self.done(until) if stop else self.diverged or self.steps >= until):
            idx = [self._batch() for _ in range(min(chunk, until - self.steps))]
            stats = torch.stack([train_step(self.net, self.opt, self.x[i], self.y[i]) for i in idx]).tolist()
            for loss, wrong, _, n in stats:
                if not math.isfinite(loss):
                    self.diverged = True  # this rate is not a candidate
                    break
                self.error.append(wrong / n)
                if self.steps >= self.trail and self.trailing() <= TARGET_ERROR and self.reached is None:
                    self.reached = self.steps
                    if stop:
                        break

    def curve(self) -> list[float]:
        """The training error of each block of `trail` steps, for the figure."""
        blocks = (self.error[i:i + self.trail] for i in range(0, self.steps, self.trail))
        return [round(sum(b) / len(b), 4) for b in blocks]


LR_LADDER = (1e-4, 2e-4, 5e-4, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # 1-2-5
FIRST_LRS = (0.002, 0.005, 0.01)
CHUNK = 25  # steps the racing nets take in turn


def race(runs: list, limit: int) -> None:
    """Train `runs` side by side, CHUNK steps each in turn, until one reaches 25%: every other run
    stops at that step (it is slower); or until all are at `limit` (or diverged)."""
    while True:
        first = min((r.reached for r in runs if r.reached is not None), default=limit)
        live = [r for r in runs if not r.done(first)]
        if not live:
            return
        step = min(r.steps for r in live) + CHUNK
        for r in live:
            r.advance(min(step, first))


def fastest(tried: dict):
    """The rate that reached 25% first (then: not diverged, the lowest trailing error, the lowest rate)."""
    return min(tried, key=lambda lr: (tried[lr].reached or math.inf, tried[lr].diverged,
                                      tried[lr].trailing(), lr))


def search(new, limit: int, first=FIRST_LRS, ladder=LR_LADDER) -> dict:
    """{lr: its run} over `first`, raced (`race`), then one ladder step at a time past the end of the
    tried rates that holds the fastest, until the fastest is inside them or the ladder ends.
    `new(lr)`: a fresh run (a Training) at that rate."""
    tried = {lr: new(lr) for lr in first}
    while True:
        race(list(tried.values()), limit)
        best, lo, hi = fastest(tried), min(tried), max(tried)
        beyond = ([r for r in ladder if r < lo][-1:] if best == lo else []) + \
                 ([r for r in ladder if r > hi][:1] if best == hi else [])
        if not beyond:
            return dict(sorted(tried.items()))
        tried.update({lr: new(lr) for lr in beyond})


def measure(x, y, activation: str, limit: int, size, norm: str | None) -> dict:
    """One activation's fastest rate (`search`, on SEARCH_SEED) and its seeds' steps to 25% there."""
    tried = search(lambda lr: Training(x, y, activation, lr, SEARCH_SEED, norm, size.batch), limit)
    lr = fastest(tried)
    print(f"{activation}: " + ", ".join(f"lr {k} {_said(t)}" for k, t in tried.items()) + f"; chose {lr}",
          flush=True)
    runs = [Training(x, y, activation, lr, seed, norm, size.batch) for seed in range(1, size.seeds + 1)]
    for seed, r in enumerate(runs, 1):
        r.advance(limit)
        print(f"{activation} seed {seed}: {_said(r)}", flush=True)
    return {"lr": lr, "limit": limit, "seeds": list(range(1, size.seeds + 1)),
            "steps_to_25": [r.reached for r in runs], "diverged": [r.diverged for r in runs],
            "steps_trained": sum(r.steps for r in [*tried.values(), *runs]),  # the search's and the seeds'

            "curves": [r.curve() for r in runs], "trail": runs[0].trail,
            "grid": {str(k): {"steps_to_25": t.reached, "steps": t.steps, "diverged": t.diverged,
                              "error": round(t.trailing(), 4)} for k, t in tried.items()}}


def _said(run: Training) -> str:
    return (f"25% at step {run.reached}" if run.reached else "diverged" if run.diverged else
            f"still {run.trailing():.1%} at step {run.steps}")


def geometric_mean(steps: list[int | None], limit: int) -> float:
    """Over the seeds, a run that never reached 25% at its limit."""
    return math.exp(statistics.fmean(math.log(s or limit) for s in steps))


def bounds(interval) -> tuple[str, str]:
    """A ratio interval's ends as shown: an open end (None: a net did not reach 25% in its window) is
    0 below, ∞ above."""
    low, high = interval
    return ("0" if low is None else f"{low:.1f}×"), ("∞" if high is None else f"{high:.1f}×")


def ratio_test(relu: list[int | None], tanh: list[int | None], relu_limit: int, tanh_limit: int) -> dict:
    """tanh's steps to 25% over ReLU's: the ratio of their geometric means over seeds, with the 95%
    interval of Welch's t on the log steps (reproduce/stats.py's compare, unpaired: the nets differ) and
    `detectable`, the smallest ratio it finds with 80% power. A run that never reached 25% counts at its
    limit: a tanh run makes the ratio a lower bound (interval [low, None]), a ReLU run an upper bound
    ([None, high]); both, no bound ([None, None]). `failed`: no run of either reached 25%."""
    logs = [{seed: math.log(s or limit) for seed, s in enumerate(arm, 1)}
            for arm, limit in ((tanh, tanh_limit), (relu, relu_limit))]
    ratio = math.exp(statistics.fmean(logs[0].values()) - statistics.fmean(logs[1].values()))
    out = {"ratio": ratio, "interval": [None, None], "detectable": None, "bound": None,
           "failed": all(s is None for s in relu + tanh)}
    if min(len(relu), len(tanh)) < 2:
        return out
    c = compare(*logs, helps=True, paired=False)
    censored = (None in relu, None in tanh)
    out["bound"] = {(False, True): "lower", (True, False): "upper", (True, True): "none"}.get(censored)
    out["interval"] = [None if censored[0] else math.exp(c.interval[0]),
                       None if censored[1] else math.exp(c.interval[1])]
    out["detectable"] = math.exp(c.detectable)
    return out


@torch.no_grad()
def error_on(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    net.eval()
    wrong = sum(int((net(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum()) for i in range(0, len(y), batch))
    net.train()
    return wrong / len(y)


def norm_pair(x, y, x_test, y_test, lr: float, steps: int, size, norm: str) -> dict:
    """§3.3's CIFAR-10 claim ("13% test error without normalization and 11% with"): Figure 1's ReLU
    net with (`norm`) and without its two normalization layers, seeds 1..n each, `steps` steps at ReLU's
    chosen rate; each net's error on the test (validation) images and its final training error."""
    seeds = list(range(1, size.seeds + 1))
    out = {"norm": norm, "lr": lr, "steps": steps, "seeds": seeds, "steps_trained": 2 * steps * len(seeds)}
    for arm, layer in (("with", norm), ("without", None)):
        test, train = [], []
        for seed in seeds:
            run = Training(x, y, "relu", lr, seed, layer, size.batch)
            run.advance(steps, stop=False)
            test.append(error_on(run.net, x_test, y_test))
            train.append(run.trailing())
        out[arm], out[f"{arm}_train"] = test, train
    return out


def figure1(x, y, size, norm: str = "across-maps") -> dict:
    """ReLU's rate and seeds (`measure`, at most `size.steps` steps), then tanh's in a window of
    `size.window` times ReLU's steps to 25% (at most `size.steps`), and the ratio (`ratio_test`)."""
    relu = measure(x, y, "relu", size.steps, size, norm)
    relu_steps = geometric_mean(relu["steps_to_25"], size.steps)
    window = min(size.steps, math.ceil(size.window * relu_steps))
    tanh = measure(x, y, "tanh", window, size, norm)
    test = ratio_test(relu["steps_to_25"], tanh["steps_to_25"], size.steps, window)
    return {"relu": relu, "tanh": tanh, "window": window, "max_ratio": window / relu_steps,
            "relu_steps": relu_steps, **test}


def verdict(res: dict) -> str:
    """What the seeds show against the paper's 6×, in one sentence."""
    r, t = res["relu"], res["tanh"]
    n_r, n_t = (sum(s is not None for s in a["steps_to_25"]) for a in (r, t))
    reached = (f"ReLU reached 25% training error in {n_r} of {len(r['steps_to_25'])} seeds (lr {r['lr']}), "
               f"tanh in {n_t} of {len(t['steps_to_25'])} (lr {t['lr']}) within {t['limit']:,} steps")
    if res["failed"]:
        return f"{reached}: no ratio; the nets failed to train (more steps: --steps)"
    low, high = bounds(res["interval"])
    bound = {"lower": "at least ", "upper": "at most "}.get(res["bound"], "")
    paper = ("above" if res["interval"][0] and res["interval"][0] > PAPER_RATIO else
             "below" if res["interval"][1] and res["interval"][1] < PAPER_RATIO else "within reach of")
    return (f"{reached}: tanh/ReLU {bound}{res['ratio']:.1f}× (95% interval {low} to {high}; the window "
            f"measures up to {res['max_ratio']:.1f}×), {paper} the paper's {PAPER_RATIO}×")


def code_key() -> str:
    """A digest of the source the curves come from (this file, the training step, the update
    rule, the layers): a made figure1 JSON is reused only while it matches."""
    h = hashlib.sha256()
    for module in (sys.modules[__name__], alexnet.engine, alexnet.optim, alexnet.layers):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def made_by_this_code(path: Path, size=None) -> bool:
    """Whether `path` is a figure1 JSON made by the current code_key() (at `size`, when given)."""
    try:
        made = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return made.get("code") == code_key() and (size is None or made.get("size") == dataclasses.asdict(size))


def run(out, size, cache=None, cifar=None, norm: str = "across-maps") -> dict:
    """Figure 1 and §3.3's pair on CIFAR-10 (`cifar`) or a cache shrunk to 32×32 (at most `size.images`
    of its images), written as JSON to `out`."""
    t0, cpu0 = time.time(), time.process_time()
    x, y, name = load_data(cache, cifar, size.images)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = Speed().setup()  # faithful: float32, TF32 off, cuDNN deterministic
    x_train, y_train = centred(x, device), y.to(device)
    res = figure1(x_train, y_train, size, norm)
    x_test, y_test, test_name = load_data(cache, cifar, split="val")  # all of them (at most 50,000)
    mean = x.to(device).float().mean(dim=0)
    steps = min(size.steps, math.ceil(PAIR_STEPS * res["relu_steps"]))
    pair = norm_pair(x_train, y_train, centred(x_test, device, mean), y_test.to(device), res["relu"]["lr"],
                     steps, size, norm)
    res["norm_pair"] = {**pair, "test": test_name, "chance": 1 - 1 / (int(y.max()) + 1)}
    res.update({"data": name, "images": len(y), "size": dataclasses.asdict(size), "batch": size.batch,
                "trail_images": TRAIL_IMAGES, "seconds": round(time.time() - t0, 1),
                "cpu_seconds": round(time.process_time() - cpu0, 1),  # all threads: the load-free cost
                "steps_trained": sum(res[k]["steps_trained"] for k in ("relu", "tanh", "norm_pair")),
                "net": f"layers-18pct stand-in (four weight layers; {norm} normalization)", "device": device,
                "backend": backend, "code_version": code_version(), "code": code_key()})
    res["verdict"] = verdict(res)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(res, indent=1))
    print(f"Figure 1 on {name} ({res['seconds']:.0f} s): {res['verdict']}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.figure1", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", help="a prepared cache (its train split shrunk to 32×32)")
    src.add_argument("--cifar", help="a torchvision CIFAR-10 folder (cifar-10-batches-py inside)")
    ap.add_argument("--out", required=True, help="JSON with the seeds' curves and steps")
    ap.add_argument("--scale", choices=list(SCALES), default="cpu-full",
                    help="the sizes below, as run_all gives them (default cpu-full)")
    ap.add_argument("--steps", type=int, help="no net trains more steps than this")
    ap.add_argument("--window", type=float, help="tanh's window, in multiples of ReLU's steps to 25%%")
    ap.add_argument("--seeds", type=int, help="measured seeds per net and per arm of §3.3's pair (≥ 2)")
    ap.add_argument("--batch", type=int, help="images a step")
    ap.add_argument("--max-images", type=int, help="--cache: at most this many training images")
    ap.add_argument("--norm", choices=list(NORMS), default="across-maps",
                    help="the net's normalization: §3.3's across maps (default) or the 2012 code's same-map")
    args = ap.parse_args(argv)
    given = {"steps": args.steps, "window": args.window, "seeds": args.seeds, "batch": args.batch,
             "images": args.max_images}
    size = dataclasses.replace(SCALES[args.scale].figure1,
                               **{k: v for k, v in given.items() if v is not None})
    if size.steps < 1 or size.window < 1 or size.seeds < 2 or size.batch < 1 or size.images < 1:
        ap.error(f"--steps {size.steps}, --window {size.window}, --seeds {size.seeds}, --batch {size.batch}, "
                 f"--max-images {size.images}: each at least 1, and --seeds at least 2")
    try:
        run(args.out, size, args.cache, args.cifar, args.norm)
    except (ValueError, RuntimeError, OSError) as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
