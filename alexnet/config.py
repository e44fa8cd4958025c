"""One config object that mirrors the paper.

Every field names its source: "§n" is a section of Krizhevsky, Sutskever &
Hinton (NIPS 2012); "2012 code" is the released cuda-convnet configuration
(`layers/layers-145.cfg`, `layers/layer-params-145.cfg`, `convdata.py`).
`reproduce/PAPER.md` collects both, with our reading of each open choice.

Where the text and the 2012 code disagree, both readings exist as profiles:

    AlexNetConfig.from_profile("paper")         # what the text says
    AlexNetConfig.from_profile("cuda-convnet")  # what the released code did

Ablations are field overrides, never forks of the model code:

    AlexNetConfig.from_profile("paper", lrn=False)       # §3.3 ablation
    AlexNetConfig.from_profile("paper", pool_kernel=2)   # §3.4 ablation
    AlexNetConfig.from_profile("paper", towers=1)        # footnote 2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

PROFILES = ("paper", "cuda-convnet")


_TUPLE_FIELDS = ("bias_one_layers", "lr_step_epochs")


def _tuples(fields: dict) -> dict:
    """The tuple fields as tuples, whether they came as JSON lists or as argparse's nargs lists."""
    return {k: tuple(v) if k in _TUPLE_FIELDS and v is not None else v for k, v in fields.items()}


@dataclass(frozen=True)
class AlexNetConfig:
    profile: str = "paper"  # which reading of the paper this config follows

    # ---- architecture (§3.5, Figure 2) ----
    num_classes: int = 1000  # §3.5: 1000-way softmax (ILSVRC)
    towers: int = 2  # §3.2: two GPUs; 1 = footnote 2's one-GPU net
    activation: str = "relu"  # §3.1 ReLU; "tanh" for Figure 1's comparison
    crop_size: int = 224  # §3.5 "224×224×3"; 227 is Caffe's choice (reproduce/PAPER.md)
    extra_conv6: bool = False  # Table 2 "1 CNN*": a sixth conv layer after pool3, reading both towers
    conv4: bool = True  # §7 "removing any of the middle layers": False removes conv4 (the ablation no-conv4)
    conv6_init_std: float = 0.03  # 2012 code, layers-146-2012-2011 conv6a/b initW (the paper gives nothing)
    conv6_init_bias: float = 1.0  # 2012 code, layers-146-2012-2011 conv6a/b initB

    # ---- local response normalization (§3.3) ----
    lrn: bool = True  # §3.3; False is the ablation "without normalization"
    lrn_size: int = 5  # §3.3 n = 5
    lrn_alpha: float = 1e-4  # §3.3 α = 10^-4
    lrn_beta: float = 0.75  # §3.3 β = 0.75
    lrn_k: float = 2.0  # §3.3 k = 2 (2012 code: minDiv=2)
    lrn_alpha_over_size: bool = False  # 2012 code divides α by n (cmrnorm)
    lrn1_before_relu: bool = False  # 2012 code: rnorm1 reads conv1 pre-ReLU
    samemap_norm: bool = False  # 2012 code: cnorm2, a 5×5 same-map norm after LRN2
    samemap_size: int = 5  # 2012 code, layers-145 cnorm2 size=5
    samemap_scale: float = 1e-3  # 2012 code, layer-params-145 cnorm2 scale (÷ size²)
    samemap_pow: float = 0.75  # 2012 code, layer-params-145 cnorm2 pow

    # ---- pooling (§3.4) ----
    pool_kernel: int = 3  # §3.4 z = 3 (overlapping); 2 is the ablation
    pool_stride: int = 2  # §3.4 s = 2

    # ---- regularization (§4.2) and initialization (§5) ----
    dropout: float = 0.5  # §4.2 p = 0.5 on fc6 and fc7 outputs; 0 = ablation
    init_std: float = 0.01  # §5: weights ~ N(0, 0.01)
    init_std_conv345: float = 0.01  # 2012 code: initW=0.03 for conv3–conv5
    bias_one_layers: tuple[str, ...] = ("conv2", "conv4", "conv5", "fc6", "fc7")  # §5
    bias_init: float = 1.0  # §5 "with the constant 1" in bias_one_layers; Caffe's bvlc_alexnet: 0.1
    fc_bias_init: float | None = None  # fc6 and fc7's bias alone (None: bias_init, as §5); a recipe setting

    # ---- data (§2, §4.1) ----
    random_crops: bool = True  # §4.1 random 224 patches and their reflections; False: the centre patch
    pca_lighting: bool = True  # §4.1 "altering the intensities of RGB channels"
    pca_std: float = 0.1  # §4.1 α_i ~ N(0, 0.1)
    pca_noise: str = "paper"  # "paper": P·(α∘λ); "cuda-convnet": P·(α∘√λ), then ÷(1+0.1)
    crop_chunk: int = 1  # 2012 code: 32 images share one crop offset and flip
    mean_crop: str = "same"  # "same": mean patch at the crop's offset (§2);
    #                          "center": 2012 code subtracts the mean's central patch

    # ---- learning (§5) ----
    batch_size: int = 128  # §5
    momentum: float = 0.9  # §5
    weight_decay: float = 5e-4  # §5
    lr: float = 0.01  # §5 ε = 0.01 for all layers
    bias_lr_mult: float = 1.0  # 2012 code: epsB = 0.02 = 2 × the initial epsW, and only epsW is divided
    bias_weight_decay: bool = True  # 2012 code: no decay on biases
    lr_schedule: str = "plateau"  # §5 "divide by 10 when val error stopped improving";
    #                               "cuda-convnet": the recorded epochs 25/51/79;
    #                               "finetune": 1 CNN*'s recorded fine-tuning (layer-params-146-2012-2011);
    #                               "step": ε ÷ 10 after each of lr_step_epochs (a deviation from §5)
    lr_step_epochs: tuple[int, ...] = ()  # "step": fixed epochs (reproduce/experiments.py, FIXED_SCHEDULES)
    lr_drops: int = 3  # §5 "reduced three times prior to termination"
    lr_patience: int = 5  # our reading of §5: epochs without a new best val error (of 90; scaled)
    lr_patience_min: int = 2  # the scaled patience's floor: one epoch cannot tell a plateau from noise
    # Two deviations from §5's rule, off in both profiles (recipe settings, reproduce/experiments.py):
    lr_warmup_epochs: float = 0.0  # ε rises linearly over the first N epochs' steps (Goyal et al. 2017)
    velocity_rescale: bool = False  # a change of ε scales the velocity by new/old (torch.optim.SGD's form)
    epochs: int = 90  # §5 "roughly 90 cycles"
    seed: int = 0
    # The name of the deviation from §5 whose values the fields above hold ("": none, §5's own), set by
    # whoever applies it (reproduce/experiments.py, STABILITY): a label, recorded with every run so that
    # runs of two settings are never taken for one another. None: recorded before names were (2026-12-04);
    # such a config is known by its values alone (`differences`).
    stability: str | None = ""

    def __post_init__(self):
        checks = {
            "profile": (self.profile in PROFILES, f"one of {PROFILES}"),
            "towers": (self.towers in (1, 2), "1 or 2"),
            "activation": (self.activation in ("relu", "tanh"), "'relu' or 'tanh'"),
            "crop_size": (self.crop_size in (224, 227), "224 or 227"),
            "pool_kernel": (self.pool_kernel in (2, 3), "3 (overlapping) or 2"),
            "dropout": (0.0 <= self.dropout < 1.0, "in [0, 1)"),
            "num_classes": (self.num_classes >= 2, "at least 2"),
            "pca_noise": (self.pca_noise in PROFILES, f"one of {PROFILES}"),
            "mean_crop": (self.mean_crop in ("same", "center"), "'same' or 'center'"),
            "lr_schedule": (self.lr_schedule in ("plateau", "cuda-convnet", "finetune", "step"),
                            "'plateau', 'cuda-convnet', 'finetune' or 'step'"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "epochs": (self.epochs >= 1, "at least 1"),
            "crop_chunk": (self.crop_chunk >= 1, "at least 1"),
            "lr_warmup_epochs": (self.lr_warmup_epochs >= 0, "at least 0"),
            "lr_step_epochs": ((self.lr_schedule != "step" or len(self.lr_step_epochs) > 0)
                               and all(e >= 1 for e in self.lr_step_epochs),
                               "epochs from 1, at least one with lr_schedule 'step' (--lr-step-epochs)"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"AlexNetConfig.{name}={getattr(self, name)!r}: must be {allowed}")

    @classmethod
    def from_profile(cls, name: str = "paper", **overrides) -> "AlexNetConfig":
        """The named reading of the paper, with ablation overrides on top."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}: choose one of {PROFILES}")
        base = {"paper": {}, "cuda-convnet": _CUDA_CONVNET}[name]
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}")
        return cls(profile=name, **_tuples({**base, **overrides}))

    def replace(self, **overrides) -> "AlexNetConfig":
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, other: "AlexNetConfig") -> dict[str, tuple]:
        """{field: (self's, other's)} for every field that differs: the one test of "the same run"
        (resuming, run_all's done-already, the tables' trained-as-today). A stability name that one
        side never recorded (None) is no difference: its values are compared as every field is."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a
                if a[k] != b[k] and not (k == "stability" and None in (a[k], b[k]))}

    @classmethod
    def from_dict(cls, d: dict) -> "AlexNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in _RETIRED}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config has fields this version does not know: {sorted(unknown)}")
        d = dict(d)
        # A config recorded before the patience floor existed trained with a floor of one epoch:
        # loaded as such, its run resumes by its own rule and is never taken for a run of today's.
        d.setdefault("lr_patience_min", 1)
        d.setdefault("stability", None)  # recorded before the setting's name was: known by its values
        return cls(**_tuples(d))

    # ---- per-tower widths (§3.5, footnote 2) ----
    @property
    def conv_widths(self) -> tuple[int, ...]:
        """Kernels per tower in conv1..conv5 (and conv6 for 1 CNN*).

        Two towers: 48-128-192-192-128 (§3.5). One tower (footnote 2): half the
        kernels of the whole net in conv1–conv4, the full 256 in conv5."""
        widths = (48, 128, 192, 192, 128) if self.towers == 2 else (48, 128, 192, 192, 256)
        return widths + (widths[-1],) if self.extra_conv6 else widths

    @property
    def fc_width(self) -> int:
        """Neurons per tower in fc6 and fc7: 2048 ×2 towers, or 4096 in one."""
        return 4096 // self.towers

    @property
    def last_hidden(self) -> int:
        """Width of the last hidden layer (fc7 of all towers), the §6.1 feature."""
        return self.fc_width * self.towers


# Fields of earlier versions that nothing reads now (the image size is the cache's, §2; evaluation's
# views are chosen where it runs; schedule_epochs lived for one commit, 1c45224, and only changes how a
# run trains, not the model): dropped when an old checkpoint's config is loaded.
_RETIRED = ("image_size", "ten_crop_test", "schedule_epochs")

# The released 2012 code (reproduce/PAPER.md, "2012 code"); every other field as the text says.
_CUDA_CONVNET = dict(
    lrn_alpha_over_size=True,  # cuda-convnet's cmrnorm uses scale/size
    lrn1_before_relu=True,  # layers-145: rnorm1a inputs=conv1a; ReLU at pool1a
    samemap_norm=True,  # layers-145: cnorm2a/b after rnorm2a/b
    init_std_conv345=0.03,  # layers-145: initW=0.03 on conv3–conv5
    bias_lr_mult=2.0,  # layer-params-145: epsB 0.02 = 2 × the initial epsW 0.01 (never divided: schedule.py)
    bias_weight_decay=False,  # cuda-convnet applies wc to weights only
    pca_noise="cuda-convnet",  # convdata.py: eigvecs·(randn·stdevs)·0.1, then ÷1.1
    crop_chunk=32,  # convdata.py: crop_chunk = 32
    mean_crop="center",  # convdata.py: data_mean_crop is the mean's centre patch
    lr_schedule="cuda-convnet",  # layer-params-145 comments: ÷10 at 25, 51, 79
)
