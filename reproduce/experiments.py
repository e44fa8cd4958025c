"""Every experiment of the paper's tables and text, in one registry.

Each experiment is a list of runs (an AlexNetConfig override set and a seed),
the paper's numbers, and what data it needs. Its `scale` ("main" for 1 CNN,
"short" for the baseline, its seed replicates and the ablations) picks its
run size in a `Scale`, chosen by `run_all` from the hardware:

- `imagenet`: real data; every run the paper's 90 epochs at batch 128.
- `cpu` (no GPU, the default there): about 18 minutes on 2 cores. Only 1 CNN
  (and Figure 1) fit; the short experiments are not run, and the tables say so
  with the time they would need (`cpu-full`).
- `cpu-full`: every row on a CPU, long enough for every run to learn: the
  short runs train as long as 1 CNN (at 10 epochs one seed of six stayed
  above half of chance; results/history/synthetic-cpu-full-paper/), so baseline-short is 1 CNN's own
  configuration and seed, and its replicates are 1 CNN's too.
- `gpu` (one or two GPUs): a 100-class embedded set, every row. As at
  `cpu-full`, the short runs train as long as 1 CNN (20 epochs: a 10-epoch run
  measured on the CPU was still at 85% error after 5), so baseline-short is
  1 CNN; about 13 minutes of training on one H200, measured (results/history/gpu-h200-20261127/).
- `smoke`: a few steps, for tests.

The five `5cnns` members are seed replicates of `baseline-short`'s
configuration at the same size, so together they give the baseline's
seed-to-seed spread.

Pairing: an ablation's seed k is compared with the baseline's seed k
(baseline-short is seed 0, 5cnns-seedk seed k). A seed fixes the data order
and every augmentation draw (alexnet/data/loader.py: functions of seed, epoch
and batch), the dropout masks (engine.dropout_seed) and the initial weights,
drawn layer after layer from torch.manual_seed(seed): the same draws wherever
the shapes agree, which is every ablation but one-tower and no-conv4 (whose
layers after the first that differs draw other numbers). The default runs
one seed of each ablation; `--experiments paired-seeds` adds seeds 1 and 2
(PAIRED_SEEDS), so each comparison is paired over three seeds.

Sources of the paper's numbers: reproduce/PAPER.md ("Reported results").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field, replace

from alexnet.config import AlexNetConfig
from alexnet.diagnostics import kick

# Paper numbers (percent). Table 1: ILSVRC-2010 test. Table 2: ILSVRC-2012.
TABLE1 = [  # model, top-1, top-5
    ("Sparse coding [2]", 47.1, 28.2),
    ("SIFT + FVs [24]", 45.7, 25.7),
    ("CNN", 37.5, 17.0),
]
TABLE2 = [  # model, top-1 val, top-5 val, top-5 test
    ("SIFT + FVs [7]", None, None, 26.2),
    ("1 CNN", 40.7, 18.2, None),
    ("5 CNNs", 38.1, 16.4, 16.4),
    ("1 CNN*", 39.0, 16.6, None),
    ("7 CNNs*", 36.7, 15.4, 15.3),
]


@dataclass(frozen=True)
class Run:
    name: str  # run directory name
    overrides: dict = field(default_factory=dict)  # AlexNetConfig fields
    profile: str = "paper"
    seed: int = 0
    data: str = "main"  # "main": the dataset; "pretrain": --pretrain-data (1 CNN*)
    init_from: str | None = None  # the run whose final weights this one starts from (all but fc8)


@dataclass(frozen=True)
class Experiment:
    name: str
    what: str  # the paper's words for it
    runs: tuple[Run, ...]
    scale: str = "main"  # "main" or "short" on the embedded dataset
    needs: str | None = None  # data that must be given, else the experiment is skipped with this reason
    # ablation rows: the paper's reduction in error (top-1, top-5) from *having* the feature
    paper_reduction: tuple[float | None, float | None] | None = None
    paper_note: str = ""


BASELINE = Run("baseline-short")  # the paper profile at the short scale: what ablations compare with

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment("1cnn", "Table 2 '1 CNN' (and Table 1 'CNN' on ILSVRC-2010)", (Run("1cnn"),)),
    Experiment("5cnns", "Table 2 '5 CNNs': five similar CNNs, softmax averaged",
               tuple(Run(f"5cnns-seed{s}", seed=s) for s in range(1, 6)), scale="short"),
    Experiment("1cnn-star", "Table 2 '1 CNN*' and '7 CNNs*': a sixth conv layer, pre-trained on ImageNet "
               "Fall 2011 (15M images, 22K classes), fine-tuned on ILSVRC-2012; two of them for 7 CNNs*",
               tuple(r for s in (0, 1) for r in (
                   Run(f"1cnn-star-pretrain{'-seed1' * s}", {"extra_conv6": True}, seed=s, data="pretrain"),
                   Run(f"1cnn-star{'-seed1' * s}", {"extra_conv6": True, "lr_schedule": "finetune"}, seed=s,
                       init_from=f"1cnn-star-pretrain{'-seed1' * s}"))),
               needs="needs ImageNet Fall 2011 / 21K (--pretrain-data DIR)"),
    Experiment("baseline-short", "the paper profile at the ablations' scale", (BASELINE,), scale="short"),
    Experiment("no-lrn", "§3.3: without local response normalization", (Run("no-lrn", {"lrn": False}),),
               scale="short", paper_reduction=(1.4, 1.2)),
    Experiment("pool-z2", "§3.4: non-overlapping pooling z = s = 2", (Run("pool-z2", {"pool_kernel": 2}),),
               scale="short", paper_reduction=(0.4, 0.3)),
    Experiment("one-tower", "footnote 2: one GPU, half the kernels in conv1–4",
               (Run("one-tower", {"towers": 1}),),
               scale="short", paper_reduction=(1.7, 1.2), paper_note="two towers vs one"),
    Experiment("no-pca", "§4.1: without PCA colour augmentation", (Run("no-pca", {"pca_lighting": False}),),
               scale="short", paper_reduction=(1.0, None), paper_note="top-1 'by over 1%'"),
    Experiment("no-dropout", "§4.2: without dropout", (Run("no-dropout", {"dropout": 0.0}),),
               scale="short", paper_note="'substantial overfitting'; no number given"),
    Experiment("no-crop", "§4.1: without random crops and reflections (the centre patch, unflipped)",
               (Run("no-crop", {"random_crops": False}),), scale="short",
               paper_note="'substantial overfitting'; no number given"),
    Experiment("no-wd", "§5: without weight decay", (Run("no-wd", {"weight_decay": 0.0}),), scale="short",
               paper_note="'reduces the model's training error'; no number given"),
    # conv4, of the three middle layers: conv5 then reads conv3's 192 maps per tower, as many as conv4
    # gave it, so nothing else changes (without conv3, conv4 would read conv2's 128, and no crossing)
    Experiment("no-conv4", "§7: without a middle conv layer (conv4)", (Run("no-conv4", {"conv4": False}),),
               scale="short", paper_reduction=(2.0, None), paper_note="'about 2%' top-1, any middle layer"),
    Experiment("cuda-convnet", "the released 2012 code's profile instead of the text's",
               (Run("cuda-convnet", profile="cuda-convnet"),), scale="short",
               paper_note="not in the paper: text vs code"),
    # §5's biases of 1 (conv2, conv4, conv5, fc6, fc7) at 0: "this initialization accelerates the early
    # stages of learning"; fc6 and fc7's too, whatever the stability setting gives them
    Experiment("bias0", "§5: the biases of 1 at 0", (Run("bias0", {"bias_init": 0.0, "fc_bias_init": 0.0}),),
               scale="short", paper_note="'accelerates the early stages of learning'; no number given"),
    Experiment("fig1", "Figure 1: four-layer CIFAR-10 convnet, ReLU vs tanh", (), scale="short"),
]}


def same_run(size, run: Run) -> tuple:
    """What makes two runs one, trained once in one directory: everything but the name, at one size
    (a Size). baseline-short is 1cnn's run wherever the short size is the main size (imagenet, cpu-full)."""
    return size, repr(replace(run, name=""))

ABLATIONS = ("no-lrn", "pool-z2", "one-tower", "no-pca", "no-dropout", "no-crop", "no-wd", "no-conv4",
             "cuda-convnet", "bias0")
DEFAULT = ("1cnn", "5cnns", "1cnn-star", "baseline-short", *ABLATIONS, "fig1")

# Seeds 1 and 2 of every ablation but cuda-convnet (no claim reads it), paired with 5cnns-seed1 and -seed2:
# `--experiments paired-seeds`, not in DEFAULT. 18 runs of the short size: at cpu-full 10.5 h by its dry run
# on 2 cores (20 runs, two of them the default's 5cnns-seed1 and -seed2; the default's 16 runs: 8.0 h);
# measured 2026-12-07, two at a time: 16–21 min a two-tower run (33–37 on a later session's slower
# machine: 40–45 min a pair with its evaluations), 13 a one-tower run. Named one by one
# (`--experiments one-tower-seed1,...`), they train alone and join a results folder without its baseline.
PAIRED_SEEDS = (1, 2)
PAIRED = tuple(a for a in ABLATIONS if a != "cuda-convnet")


def seed_run(ablation: str, seed: int) -> Run:
    """Seed `seed` of an ablation: its run with another seed (seed 0 is the ablation's own run)."""
    run = EXPERIMENTS[ablation].runs[0]
    return run if seed == run.seed else replace(run, name=f"{ablation}-seed{seed}", seed=seed)


EXPERIMENTS["paired-seeds"] = Experiment(
    "paired-seeds", "more seeds of each ablation, paired with the baseline's (5cnns-seed1, -seed2)",
    tuple(seed_run(a, s) for a in PAIRED for s in PAIRED_SEEDS), scale="short")
RUNS = {run.name: (exp, run) for exp in EXPERIMENTS.values() for run in exp.runs}  # by run name


@dataclass(frozen=True)
class Evaluation:
    """eval/<name>.json: the runs whose softmax is averaged (one run, or an ensemble), §4.1's
    views for them, the scale that trains them, and the Table 2 row the number fills."""
    name: str
    runs: tuple[str, ...]  # run names; all must be trained
    scale: str = "short"
    views: tuple[str, ...] = ("center",)
    row: str | None = None  # Table 2's model
    note: str = ""  # how the number was made, after its views

    @property
    def test_name(self) -> str:
        """Its evaluation on a test split (Table 1 on ILSVRC-2010)."""
        return f"{self.name}-test"

    @property
    def dropout_name(self) -> str:
        """Its ×0.5 against the geometric mean of dropout networks (§4.2; run_all makes it for 1 CNN)."""
        return f"{self.name}-dropout"

    @property
    def train_name(self) -> str:
        """Its evaluation on the training split (centre patch, no dropout): the overfitting claims' gap."""
        return f"{self.name}-train"


_SEEDS = tuple(r.name for r in EXPERIMENTS["5cnns"].runs)
_FINE_TUNED = tuple(r.name for r in EXPERIMENTS["1cnn-star"].runs if r.init_from)
EVALUATIONS: dict[str, Evaluation] = {e.name: e for e in [
    Evaluation("1cnn", ("1cnn",), "main", ("center", "ten"), row="1 CNN"),
    Evaluation("5cnns", _SEEDS, row="5 CNNs", note="5 runs of seeds 1–5, softmax averaged"),
    Evaluation("1cnn-star", _FINE_TUNED[:1], "main", ("center", "ten"), row="1 CNN*",
               note="pre-trained on the --pretrain-data set, then fine-tuned (reproduce/PAPER.md)"),
    Evaluation(BASELINE.name, (BASELINE.name,)),
    *(Evaluation(name, (name,)) for name in ABLATIONS),
    *(Evaluation(run.name, (run.name,)) for run in EXPERIMENTS["paired-seeds"].runs),
    Evaluation("7cnns-star", _SEEDS + _FINE_TUNED, "short", ("center", "ten"), row="7 CNNs*",
               note="the 5 CNNs and two pre-trained, fine-tuned nets, softmax averaged"),
]}
MAIN = EVALUATIONS["1cnn"]  # Table 1's CNN and Table 2's 1 CNN; its run draws Figures 3 and 4
FIGURE1 = EXPERIMENTS["fig1"]  # not a training run of AlexNet: reproduce/figure1.py
SEED_REPLICATES = EVALUATIONS["5cnns"]  # with baseline-short, the baseline configuration's seed replicates


@dataclass(frozen=True)
class Claim:
    """One checkable claim of the paper beyond its tables (reproduce/claims.py measures each, from the
    runs of `experiments`, and computes its verdict)."""
    name: str  # reproduce/claims.py's MEASURES key
    section: str
    claim: str  # in a few words
    paper: str  # the paper's figure
    experiments: tuple[str, ...] = ()  # whose runs it reads (EXPERIMENTS names)


CLAIMS: tuple[Claim, ...] = (
    Claim("relu", "§3.1, Fig. 1", "ReLU reaches 25% training error several times faster than tanh",
          "6× (CIFAR-10, a four-layer net)", ("fig1",)),
    Claim("two-towers", "§3.2", "two towers beat one", "1.7 / 1.2 points lower top-1 / top-5",
          ("one-tower",)),
    Claim("two-towers-time", "§3.2", "two towers take slightly less time to train than one",
          "\"slightly less time\"", ("one-tower",)),
    Claim("lrn", "§3.3", "local response normalization lowers the error", "1.4 / 1.2 points lower",
          ("no-lrn",)),
    Claim("lrn-cifar", "§3.3", "on CIFAR-10, the four-layer net's test error without normalization, and with",
          "13% without, 11% with", ("fig1",)),
    Claim("pool", "§3.4", "overlapping pooling lowers the error", "0.4 / 0.3 points lower", ("pool-z2",)),
    Claim("pool-overfit", "§3.4", "with overlapping pooling the net is slightly harder to overfit",
          "\"slightly more difficult to overfit\"", ("pool-z2",)),
    Claim("crop-overfit", "§4.1", "without random crops and reflections the net overfits substantially",
          "\"substantial overfitting\"", ("no-crop",)),
    Claim("pca", "§4.1", "PCA lighting lowers top-1 error by over 1%", "> 1 point top-1", ("no-pca",)),
    Claim("ten-patches", "§4.1", "averaging the softmax of ten patches beats the centre patch alone",
          "the test-time rule of §4.1; no separate number", ("1cnn",)),
    Claim("dropout-overfit", "§4.2", "without dropout the net overfits substantially",
          "\"substantial overfitting\"", ("no-dropout",)),
    Claim("dropout-slower", "§4.2", "dropout roughly doubles the iterations needed to converge", "about 2×",
          ("no-dropout",)),
    Claim("dropout-mean", "§4.2", "multiplying the outputs by 0.5 at test time approximates the geometric "
          "mean of the dropout networks' predictions", "\"a reasonable approximation\"", ("1cnn",)),
    Claim("bias-early", "§5", "biases of 1 accelerate the early stages of learning",
          "\"accelerates the early stages of learning\"", ("bias0",)),
    Claim("wd-train", "§5", "weight decay lowers the training error, not only the validation error",
          "\"reduces the model's training error\"", ("no-wd",)),
    Claim("ensemble", "§6", "averaging 5 CNNs beats one", "38.1 against 40.7 top-1", ("5cnns",)),
    Claim("towers-colour", "§6.1, Fig. 3", "one tower's conv1 kernels are colour-agnostic, the other's "
          "colour-specific, in every run", "\"during every run\"", ("1cnn", "5cnns", *ABLATIONS)),
    Claim("kernels", "§6.1, Fig. 3", "conv1 learns frequency- and orientation-selective kernels and coloured "
          "blobs, unlike its random initialization", "Figure 3's 96 kernels", ("1cnn",)),
    Claim("neighbours", "§6.1, Fig. 4", "images near in the last hidden layer share a class without being "
          "near in pixels", "Figure 4's rows", ("1cnn",)),
    Claim("depth", "§7", "removing a middle conv layer costs about 2% top-1", "about 2 points top-1",
          ("no-conv4",)),
    Claim("time", "§5", "90 epochs of ImageNet took five to six days on two GTX 580 3GB", "5–6 days"),
)


def select(names: str | None) -> list[Experiment]:
    """Experiments from a comma-separated list (None: all); unknown names are an error.
    A run's own name selects that run of its experiment alone (`5cnns-seed1`: one seed, as for
    Figure 3's spread over seeds; the experiment's evaluation needs all its runs, so it is not made).
    Ablations bring their short-scale baseline with them; a fine-tuning run, its pre-training."""
    wanted = DEFAULT if not names else tuple(n.strip() for n in names.split(",") if n.strip())
    member = {r.name: e for e in EXPERIMENTS.values() for r in e.runs if r.name not in EXPERIMENTS}
    unknown = [n for n in wanted if n not in EXPERIMENTS and n not in member]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)} "
                         "(or a run of one, e.g. 5cnns-seed1)")
    if "paired-seeds" in wanted and "5cnns" not in wanted:  # its baseline: seeds 1 and 2 of the 5 CNNs
        wanted = (*wanted, *(f"5cnns-seed{s}" for s in PAIRED_SEEDS))
    if any(n in ABLATIONS for n in wanted) and "baseline-short" not in wanted:
        wanted = ("baseline-short", *wanted)
    chosen: dict[str, set[str]] = {}  # experiment → the names of its selected runs
    for n in wanted:
        exp = EXPERIMENTS.get(n) or member[n]
        chosen.setdefault(exp.name, set()).update({r.name for r in exp.runs} if n in EXPERIMENTS else {n})
    out = []
    for name, runs in chosen.items():
        exp = EXPERIMENTS[name]
        runs |= {r.init_from for r in exp.runs if r.name in runs and r.init_from}
        out.append(exp if len(runs) == len(exp.runs) else
                   replace(exp, runs=tuple(r for r in exp.runs if r.name in runs)))
    return out


PAPER_BATCH = 128  # §5: "a batch size of 128 examples"
PAPER_CLASSES = 1000  # ILSVRC: the classes §5's values were made for


# ‖h‖² of fc8's input h at the first step, against the bias b of fc6 and fc7 with every other bias at §5's
# 1 and dropout on: H(b) = a·b² + c·b + h0, a least-squares fit to 42 first steps (the cpu-full and gpu
# scales' sets, seeds 0–2, b from 0.03 to 1; results/recipe/fc8_input.json, `python -m reproduce.recipe
# --measure`). At b = 0 the conv layers' own biases of 1 still give ‖h‖² ≈ 150.
FC8_INPUT_SQ = (2171.3, 593.1, 145.9)  # a, c, h0


def fc8_input_sq(fc_bias: float) -> float:
    """‖h‖² at the first step for fc6 and fc7's bias `fc_bias` (FC8_INPUT_SQ's fit, dropout on)."""
    a, c, h0 = FC8_INPUT_SQ
    return a * fc_bias ** 2 + c * fc_bias + h0


def kick_matched_bias(classes: int, batch: int) -> float:
    """fc6 and fc7's bias b at which the first steps' class-mix kick ε·‖h‖²(b)·√(p(1−p)/B) equals
    ImageNet's under §5's values (bias 1, 1,000 classes, batch 128: 0.08 nats with dropout), at the same ε:
    ‖h‖²(b) = ‖h‖²(1) × class_mix(1000, 128) / class_mix(C, B), solved on FC8_INPUT_SQ's fit. Clipped to
    [0, 1]: where even b = 0 kicks harder (10 classes at batch 16, 3 at batch 16), 0; where the class mix
    is ImageNet's or calmer, §5's 1. Rounded to 0.01: 10 classes at batch 32 (cpu-full) give 0.01, where
    b = 0 kicks almost as hard as ImageNet; 100 at batch 128 give 0.48."""
    a, c, h0 = FC8_INPUT_SQ
    target = fc8_input_sq(1.0) * class_mix(PAPER_CLASSES, PAPER_BATCH) / class_mix(classes, batch)
    if target <= h0:
        return 0.0
    b = (-c + math.sqrt(c * c + 4 * a * (target - h0))) / (2 * a)
    return round(min(b, 1.0), 2)


KICK_MATCHED = "kick-matched"  # Stability.fc_bias: kick_matched_bias of the run's classes and batch


@dataclass(frozen=True)
class Stability:
    """A named recipe setting: a deviation from §5's ε and bias initialization for data where §5's values
    were measured to diverge or die (reproduce/PAPER.md, "Stability" and "Recipe"; results/stability/,
    results/recipe/). Each field left at its default keeps §5's:
    - `bias_init`: every bias §5 sets to 1 (conv2, conv4, conv5, fc6, fc7; and 1 CNN*'s conv6, which the
      2012 code sets to 1) starts here instead (Caffe's bvlc_alexnet: 0.1);
    - `fc_bias`: fc6 and fc7's alone, a value or KICK_MATCHED (kick_matched_bias);
    - `lr_per_image`: ε × batch / 128, the paper's ε per image at a batch smaller than 128;
    - `warmup_epochs`: ε rises linearly over the first epochs' steps (alexnet/schedule.py, warmup);
    - `velocity_rescale`: a change of ε scales the velocity by new/old (alexnet/schedule.py, apply).
    Every run of a scale uses one setting or none; configs, logs, run directories, stopped.json,
    evaluations, table headers and figures name it."""
    name: str
    why: str
    bias_init: float | None = None
    fc_bias: float | str | None = None
    lr_per_image: bool = False
    warmup_epochs: float = 0.0
    velocity_rescale: bool = False

    def apply(self, cfg: AlexNetConfig) -> AlexNetConfig:
        changed = {"stability": self.name}
        if self.lr_per_image:
            changed["lr"] = cfg.lr * cfg.batch_size / PAPER_BATCH
        if self.bias_init is not None:
            changed["bias_init"] = self.bias_init
            if cfg.extra_conv6:  # 1 CNN*'s sixth layer
                changed["conv6_init_bias"] = self.bias_init
        if self.fc_bias is not None:
            changed["fc_bias_init"] = (kick_matched_bias(cfg.num_classes, cfg.batch_size)
                                       if self.fc_bias == KICK_MATCHED else self.fc_bias)
        if self.warmup_epochs:
            changed["lr_warmup_epochs"] = self.warmup_epochs
        if self.velocity_rescale:
            changed["velocity_rescale"] = True
        return cfg.replace(**changed)

    def changes(self, batch_size: int | None = None) -> str:
        """'biases 1 → 0.1, ε × 32/128': what it changes, in a few words."""
        said = []
        if self.bias_init is not None:
            said.append(f"biases 1 → {self.bias_init:g}")
        if self.fc_bias == KICK_MATCHED:
            said.append("fc6 and fc7's biases kick-matched (ImageNet's first-step kick at these classes "
                        "and batch; the value is in each run's config)")
        elif self.fc_bias is not None:
            said.append(f"fc6 and fc7's biases 1 → {self.fc_bias:g}")
        if self.lr_per_image:
            said.append(f"ε × {batch_size}/{PAPER_BATCH} (the paper's ε per image)" if batch_size
                        else "ε per image (ε × batch/128)")
        if self.warmup_epochs:
            said.append(f"ε warmed up linearly over the first {self.warmup_epochs:g} epoch(s)")
        if self.velocity_rescale:
            said.append("the velocity rescaled with each change of ε")
        return ", ".join(said)

    def describe(self, batch_size: int) -> str:
        return f"stability setting `{self.name}`: {self.changes(batch_size)}; {self.why}"


STABILITY: dict[str, Stability] = {s.name: s for s in [
    Stability("per-image-lr-bias0.1", bias_init=0.1, lr_per_image=True,
              why="at 10 classes and batch 32 the paper's values diverged in 2 of 3 runs and no-dropout died "
                  "in 3 of 3; with this setting 0 of 15 diverged (results/stability/)"),
    # the recipe study's candidates (results/recipe/)
    Stability("bias0.1", bias_init=0.1, why="Caffe's bvlc_alexnet biases at the paper's ε"),
    Stability("fc-bias0.1", fc_bias=0.1,
              why="the kick lives in fc8's input, which fc6 and fc7's biases make a constant vector; the "
                  "conv biases keep §5's 1"),
    Stability("fc-bias-kick-matched", fc_bias=KICK_MATCHED,
              why="fc6 and fc7's biases set so that the first steps kick as hard as ImageNet's under §5"),
    Stability("warmup1", warmup_epochs=1.0,
              why="Goyal et al. 2017's linear warmup of ε over the first epoch, §5's biases"),
    Stability("velocity-rescale", velocity_rescale=True,
              why="the velocity follows ε ÷ 10 at once, instead of carrying the old ε's steps on"),
]}
STABLE = "per-image-lr-bias0.1"  # the gpu scale's stability setting (cpu-full's until the recipe study)
# The cpu-full scale, and data sets whose class mix passes KICK_LIMIT (your own ImageFolder, ILSVRC at a
# small batch): fc6 and fc7's biases kick-matched, everything else §5's. A 3-class ImageFolder at batch 16
# ended right and confident (validation error 0, last training loss 0.0000) where STABLE ended right but
# unsure (0.965, ln 3 = 1.10); at cpu-full conv1 learned as under §5, and over six seeds as much as under
# Caffe's bias0.1 but steadier (bias0.1 is about an epoch faster): reproduce/PAPER.md, "Recipe".
SMALL_DATA = "fc-bias-kick-matched"


def class_mix(classes: int, batch: int) -> float:
    """√(p(1−p)/B), p = 1/C: how much a class's share of a batch varies from batch to batch. The
    first steps' kick, ε·‖h‖²·class_mix (alexnet.diagnostics.kick), is this times what the recipe sets."""
    return kick(1.0, 1.0, classes, batch)


# §5's values are known to train at ImageNet's 1,000 classes and batch 128. Where the class mix makes
# their kick at least this many times ImageNet's, the stability setting applies unless --stability says
# otherwise. Measured (results/stability/): 1× trains (the paper); at 3.2× (100 classes, batch 128: the
# gpu scale) no-dropout died under §5's values; at 19× (10 classes, batch 32) 2 of 3 runs diverged. The
# limit sits between 1× and 3.2×: ILSVRC at batch 32 (2×) takes the setting, at batch 64 (1.4×) not.
KICK_LIMIT = 2.0


def choose_stability(classes: int | None, batch: int, scale: str, asked: str | None) -> tuple[str, str]:
    """The one rule for which stability setting a set of runs trains under: (its STABILITY name, or ""
    for §5's values; why). `asked`: --stability ("paper": §5's values; None: not given). Not asked, a
    scale that declares a setting (cpu, cpu-full, gpu, smoke) has it; on other data (the imagenet
    scale) the class mix of `classes` at `batch` decides (KICK_LIMIT). run_all, the tables, the compute
    plan, the figures and tools/gpu_session.sh all ask this function, and nothing else decides."""
    if asked is not None:
        name = "" if asked == "paper" else asked
        if name and name not in STABILITY:
            raise ValueError(f"unknown stability setting {asked!r}: choose from 'paper', "
                             f"{', '.join(map(repr, STABILITY))}")
        return name, f"--stability {asked}"
    declared = SCALES[scale].main.stability
    if declared is not None:
        return declared, f"the {scale} scale's"
    if classes is None:
        return "", "the class count is not known yet: §5's values"
    ratio = round(class_mix(classes, batch) / class_mix(PAPER_CLASSES, PAPER_BATCH), 6)  # 2× is 2×, not 1.99…
    if ratio >= KICK_LIMIT:
        return SMALL_DATA, (f"{classes} classes at batch {batch}: under §5's values the first steps' "
                        f"class-mix kick would be {ratio:.1f}× ImageNet's at batch 128, at least "
                        f"{KICK_LIMIT:g}× (reproduce/experiments.py, KICK_LIMIT); --stability paper trains "
                        "with §5's values")
    return "", (f"{classes} classes at batch {batch}: the class-mix kick is {ratio:.1f}× ImageNet's at batch "
                f"128, under {KICK_LIMIT:g}×")


@dataclass(frozen=True)
class FixedSchedule:
    """A named deviation from §5's plateau rule ("divide the learning rate by 10 when the validation
    error rate stopped improving"): ε ÷ 10 after fixed shares of a run's epochs, whatever its validation
    error does (alexnet/schedule.py, StepSchedule). Runs that follow the rule are compared at different
    ε: at cpu-full the rule, reading 200 validation images, divided the replicates' ε at epochs 8 to 12
    and never one-tower's, which was then scored at ten times their ε. Runs of a scale that names one
    follow it, ablations and baseline alike; runs of another recorded schedule (cuda-convnet's, 1 CNN*'s
    fine-tuning) keep theirs."""
    name: str
    after: tuple[float, ...]  # shares of the run's epochs after which ε ÷ 10
    why: str

    def epochs(self, epochs: int) -> tuple[int, ...]:
        """The epochs (counted from 1) after which ε ÷ 10 in a run of `epochs`."""
        return tuple(max(1, round(a * epochs)) for a in self.after)

    def describe(self, epochs: int) -> str:
        return (f"ε schedule `{self.name}`, **not §5's plateau rule**: ε ÷ 10 after epoch "
                f"{', '.join(map(str, self.epochs(epochs)))} of {epochs} in every run; {self.why}")


FIXED_SCHEDULES: dict[str, FixedSchedule] = {s.name: s for s in [
    # 5/7 of a run's epochs: at cpu-full's 14 epochs on generator 2, 10 of 14, where the plateau rule
    # divided the replicates' ε (epochs 8 to 12), then 4 at ε/10, as the paper's last division left about a
    # tenth of its 90 epochs; at its 28 epochs on generator 4, 20 of 28
    FixedSchedule("step-5/7", (5 / 7,), why="an ablation and its baseline train at the same ε at every "
                  "epoch (the plateau rule divided the seed replicates' ε at epochs 8 to 12, or "
                  "never, on generator 2's 200 validation images, and would after epochs 6 to 20 on "
                  "generator 4's 500)"),
]}


@dataclass(frozen=True)
class Size:
    """How long the runs of one scale train: config fields (epochs, batch_size) and train_batches;
    and `stability`, a STABILITY setting's name ("": the paper's recipe; None: choose_stability's
    rule decides from the data, as at the imagenet scale)."""
    epochs: int
    batch_size: int
    train_batches: int = 0  # only the first N batches of each epoch (0: all)
    stability: str | None = ""
    schedule: str = ""  # a FIXED_SCHEDULES name instead of §5's plateau rule ("": the rule)

    def __post_init__(self):
        if self.stability and self.stability not in STABILITY:
            raise ValueError(f"unknown stability setting {self.stability!r}: choose from 'paper', "
                             f"{', '.join(map(repr, STABILITY))}")

    @property
    def tag(self) -> str:
        """'e14-b32' (and '-t6' for train_batches, '-per-image-lr-bias0.1' for a stability
        setting): the run directory level of this size."""
        return (f"e{self.epochs}-b{self.batch_size}"
                + (f"-t{self.train_batches}" if self.train_batches else "")
                + (f"-{self.stability}" if self.stability else "")
                + (f"-{self.schedule.replace('/', 'of')}" if self.schedule else ""))

    def describe(self) -> str:
        """'1 epoch(s) of 6 batches of 32'."""
        batches = f"{self.train_batches} batches" if self.train_batches else "all batches"
        return f"{self.epochs} epoch(s) of {batches} of {self.batch_size}"

    def recipe(self) -> str:
        """What the runs' ε and biases are: §5's, or the stability setting's, said as a deviation."""
        schedule = f"; {FIXED_SCHEDULES[self.schedule].describe(self.epochs)}" if self.schedule else ""
        if not self.stability:
            return "the paper's (ε and bias initialization as §5 gives them, at this batch size)" + schedule
        return "**not the paper's**: " + STABILITY[self.stability].describe(self.batch_size) + schedule


@dataclass(frozen=True)
class Override:
    """What run_all's --epochs, --batch-size and --stability change in every run's size
    (None: the scale's own). `stability` "paper" means §5's values, no setting; Size checks
    any other name."""
    epochs: int | None = None
    batch_size: int | None = None
    stability: str | None = None
    why: str = ""  # why this stability setting (choose_stability): the tables and the plan say it

    def apply(self, size: Size) -> Size:
        changed = {k: v for k, v in (("epochs", self.epochs), ("batch_size", self.batch_size)) if v}
        if self.stability is not None:
            changed["stability"] = "" if self.stability == "paper" else self.stability
        return replace(size, **changed)

    def resolved(self, classes: int | None, scale: str) -> Override:
        """This override with its stability setting chosen (choose_stability) when none was given:
        what run_all's plan, the tables and the figures all train or read under."""
        if self.stability is not None and self.why:
            return self
        batch = self.batch_size or SCALES[scale].main.batch_size
        name, why = choose_stability(classes, batch, scale, self.stability)
        return replace(self, stability=name or "paper", why=why)

    def describe(self) -> str:
        """'--epochs 2, --batch-size 16: every run' ('' when nothing is changed)."""
        flags = (("--epochs", self.epochs), ("--batch-size", self.batch_size))
        given = [f"{flag} {v}" for flag, v in flags if v]
        return ", ".join(given) + ": every run" if given else ""


@dataclass(frozen=True)
class Figure1Size:
    """Figure 1's budget at a scale (reproduce/figure1.py): steps, not epochs."""
    steps: int  # no net trains longer: a ReLU net not at 25% training error by then failed to train
    window: float  # tanh's window, in multiples of ReLU's steps to 25%: the largest ratio it can measure
    seeds: int  # measured seeds per net and per arm of §3.3's pair (the rates race on another)
    batch: int  # images a step
    images: int = 50_000  # training images at most (CIFAR-10's 50,000)


@dataclass(frozen=True)
class Scale:
    """Run sizes for the `main` and `short` experiments (None: not run at this
    scale), the embedded dataset's size, and Figure 1's budget."""
    name: str
    main: Size
    short: Size | None
    synthetic: tuple[int, int, int] | None  # classes, train and val images per class; None: real data
    figure1: Figure1Size
    why: str  # one line for the tables and --help

    def __getitem__(self, kind: str) -> Size | None:
        return self.main if kind == "main" else self.short

    def size(self, kind: str, override: Override | None = None) -> Size | None:
        """The `main` or `short` run size, with run_all's --epochs, --batch-size and --stability
        applied; None: not run at this scale."""
        size = self[kind]
        return override.apply(size) if size and override else size


SCALES: dict[str, Scale] = {s.name: s for s in [
    # real data: the class mix at the batch decides the recipe (choose_stability): §5's on ILSVRC at 128
    Scale("imagenet", Size(90, 128, stability=None), Size(90, 128, stability=None), None,
          Figure1Size(50_000, 10, 3, 128),
          "the paper's 90 epochs at batch 128"),
    # Figure 1 at cpu: a fixed 120 of the training images (ReLU reaches 25% in about 130 steps there);
    # cpu-full: all of them
    Scale("cpu", Size(14, 32), None, (10, 120, 20), Figure1Size(3_000, 10, 3, 32, images=120),
          "about 18 min on 2 CPU cores: 1 CNN and Figure 1; the short experiments need --scale cpu-full"),
    # cpu-full trains with §5's values on generator 4 (the embedded set since issue 48), 28 epochs, ε ÷ 10
    # after 20 (reproduce/PAPER.md, "Recipe on generator 4"; runs/ probes of 2026-12-06, 2 cores): the
    # recipe study's fc-bias-kick-matched, chosen on generator 2, left 1 CNN at chance after 14 epochs
    # (88.4% top-1); under §5's values it fell below 80% in epoch 8 and stood at 45.2% after 20 epochs at
    # ε 0.01 (26.8% after 28), Caffe's bias0.1 only in epoch 13 (and relapsed to 77.8% in epoch 20). The
    # cost, measured: no-dropout under §5's values diverged and died in its first 74 steps (peak 37.8,
    # ln 10 = 2.30), as on generator 2; its row reads "failed to train". The gpu scale keeps the stability
    # setting, measured as stable there as the kick-matched bias and faster (results/recipe/criteria.md);
    # at batch 128 its ε is the paper's, only the biases change.
    # Its runs are compared with one another (the ablations, the claims), so they share one ε schedule,
    # FIXED_SCHEDULES' step-5/7, 1 CNN with them (it is baseline-short's run).
    # cpu-full validates on 500 images, not 200 (issue 49): a run's top-1 then has a binomial sd of
    # 1.3 points at 10% error, not 2.1, for about 7% more time a run (a validation image costs about a
    # third of a training one); its results stay results/synthetic-cpu-full (run_all names a scale's own
    # set by its training images)
    Scale("cpu-full", Size(28, 32, schedule="step-5/7"),
          Size(28, 32, schedule="step-5/7"), (10, 120, 50),  # 500 validation images
          Figure1Size(30_000, 10, 3, 32),
          "every row on a CPU: 1 CNN, the baseline, its 5 seed replicates and the 10 ablations"),
    Scale("gpu", Size(20, 128, stability=STABLE), Size(20, 128, stability=STABLE), (100, 80, 20),
          Figure1Size(50_000, 10, 5, 128),
          "100 classes, every row: 15 runs of 20 epochs (12 of them: about 13 min of training on one H200)"),
    Scale("smoke", Size(1, 4, train_batches=2), Size(1, 4, train_batches=1), (4, 12, 4),
          Figure1Size(4, 2, 2, 8),
          "a few steps (tests)"),
]}


def run_config(run: Run, size: Size, num_classes: int) -> AlexNetConfig:
    """The AlexNetConfig of one run: its profile, seed and overrides at a size (and its stability setting)."""
    cfg = AlexNetConfig.from_profile(run.profile, num_classes=num_classes, seed=run.seed, epochs=size.epochs,
                                     batch_size=size.batch_size, **run.overrides)
    if size.stability:  # the run's own overrides win over the setting's (bias0's biases)
        cfg = STABILITY[size.stability].apply(cfg).replace(**run.overrides)
    if size.schedule and cfg.lr_schedule == "plateau":
        steps = FIXED_SCHEDULES[size.schedule].epochs(size.epochs)
        cfg = cfg.replace(lr_schedule="step", lr_step_epochs=steps)
    return cfg


def main(argv=None) -> int:
    """`python -m reproduce.experiments`: print one run's AlexNetConfig as JSON, as run_all trains it
    at a scale (its stability setting chosen by choose_stability), for `alexnet.train --config`."""
    ap = argparse.ArgumentParser(prog="python -m reproduce.experiments", description=main.__doc__)
    ap.add_argument("--scale", choices=list(SCALES), required=True)
    ap.add_argument("--classes", type=int, required=True, help="the data set's class count")
    ap.add_argument("--run", default=MAIN.runs[0], help=f"a run name (default {MAIN.runs[0]})")
    ap.add_argument("-b", "--batch-size", type=int, help="instead of the scale's")
    ap.add_argument("--stability", choices=["paper", *STABILITY], help="instead of the rule's choice")
    args = ap.parse_args(argv)
    if args.run not in RUNS:
        ap.error(f"--run {args.run}: choose from {', '.join(RUNS)}")
    exp, run = RUNS[args.run]
    asked = Override(batch_size=args.batch_size, stability=args.stability)
    override = asked.resolved(args.classes, args.scale)
    size = SCALES[args.scale].size(exp.scale, override)
    if size is None:
        ap.error(f"{args.run} is not run at the {args.scale} scale")
    print(json.dumps(run_config(run, size, args.classes).to_dict(), indent=1))
    print(f"{args.run} at the {args.scale} scale: {size.recipe().replace('**', '')} ({override.why})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
