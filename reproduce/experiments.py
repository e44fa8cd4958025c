"""Every experiment of the paper's tables and text, in one registry.

Each experiment is a list of runs (an AlexNetConfig override set and a seed),
the paper's numbers, and what data it needs. Scales: on ImageNet every run is
the paper's 90 epochs at batch 128; on the embedded synthetic dataset the
`main` scale gets most of the ~15-minute CPU budget (so 1 CNN visibly learns
and its conv1 kernels show structure) and the `short` scale (ablations, the
ensemble's members) a few batches each, so their numbers are mostly noise and
are labelled with their scale wherever they appear.

Sources of the paper's numbers: reproduce/PAPER.md ("Reported results").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alexnet.config import AlexNetConfig

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
    Experiment("1cnn-star", "Table 2 '1 CNN*': a sixth conv layer, pre-trained on ImageNet Fall 2011 "
               "(15M images, 22K classes), fine-tuned on ILSVRC-2012", (Run("1cnn-star", {"extra_conv6": True}),),
               needs="needs ImageNet Fall 2011 / 21K (--pretrain-data DIR)"),
    Experiment("baseline-short", "the paper profile at the ablations' scale", (BASELINE,), scale="short"),
    Experiment("no-lrn", "§3.3: without local response normalization", (Run("no-lrn", {"lrn": False}),),
               scale="short", paper_reduction=(1.4, 1.2)),
    Experiment("pool-z2", "§3.4: non-overlapping pooling z = s = 2", (Run("pool-z2", {"pool_kernel": 2}),),
               scale="short", paper_reduction=(0.4, 0.3)),
    Experiment("one-tower", "footnote 2: one GPU, half the kernels in conv1–4", (Run("one-tower", {"towers": 1}),),
               scale="short", paper_reduction=(1.7, 1.2), paper_note="two towers vs one"),
    Experiment("no-pca", "§4.1: without PCA colour augmentation", (Run("no-pca", {"pca_lighting": False}),),
               scale="short", paper_reduction=(1.0, None), paper_note="top-1 'by over 1%'"),
    Experiment("no-dropout", "§4.2: without dropout", (Run("no-dropout", {"dropout": 0.0}),),
               scale="short", paper_note="'substantial overfitting'; no number given"),
    Experiment("cuda-convnet", "the released 2012 code's profile instead of the text's",
               (Run("cuda-convnet", profile="cuda-convnet"),), scale="short",
               paper_note="not in the paper: text vs code"),
    Experiment("fig1", "Figure 1: four-layer CIFAR-10 convnet, ReLU vs tanh", (), scale="short"),
]}

ABLATIONS = ("no-lrn", "pool-z2", "one-tower", "no-pca", "no-dropout", "cuda-convnet")
DEFAULT = ("1cnn", "5cnns", "1cnn-star", "baseline-short", *ABLATIONS, "fig1")


def select(names: str | None) -> list[Experiment]:
    """Experiments from a comma-separated list (None: all); unknown names are an error.
    Ablations bring their short-scale baseline with them."""
    wanted = DEFAULT if not names else tuple(n.strip() for n in names.split(",") if n.strip())
    unknown = [n for n in wanted if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)}")
    if any(n in ABLATIONS for n in wanted) and "baseline-short" not in wanted:
        wanted = ("baseline-short", *wanted)
    return [EXPERIMENTS[n] for n in wanted]


@dataclass(frozen=True)
class Size:
    """How long the runs of one scale train: config fields (epochs, batch_size) and train_batches."""
    epochs: int
    batch_size: int
    train_batches: int = 0  # only the first N batches of each epoch (0: all)

    def describe(self) -> str:
        """'1 epoch(s) of 6 batches of 32'."""
        batches = f"{self.train_batches} batches" if self.train_batches else "all batches"
        return f"{self.epochs} epoch(s) of {batches} of {self.batch_size}"


# Run sizes per scale, for the `main` and the `short` experiments.
SCALES: dict[str, dict[str, Size]] = {
    "imagenet": {"main": Size(epochs=90, batch_size=128), "short": Size(epochs=90, batch_size=128)},
    "embedded": {"main": Size(epochs=14, batch_size=32), "short": Size(epochs=1, batch_size=32, train_batches=6)},
    "smoke": {"main": Size(epochs=1, batch_size=4, train_batches=2), "short": Size(epochs=1, batch_size=4, train_batches=1)},
}


def run_config(run: Run, size: Size, num_classes: int) -> AlexNetConfig:
    """The AlexNetConfig of one run: its profile, seed and overrides at a size."""
    return AlexNetConfig.from_profile(run.profile, num_classes=num_classes, seed=run.seed, epochs=size.epochs,
                                      batch_size=size.batch_size, **run.overrides)
