"""Train AlexNet with §5's SGD and schedule; resumable, one JSON line per epoch.

    python -m alexnet.train --cache cache/synthetic-g4 --run-dir runs/1cnn
    python -m alexnet.train --cache cache/imagenet --run-dir runs/1cnn --devices cuda:0,cuda:1
    python -m alexnet.train ... --profile cuda-convnet --epochs 30 --no-lrn     # an ablation
    python -m alexnet.train ... --fast    # bf16 + channels-last + torch.compile: faster, NOT bit-faithful
    torchrun --nproc_per_node=4 -m alexnet.train --cache cache/imagenet --run-dir runs/1cnn   # 8 GPUs

Restarting the same command resumes from the newest valid checkpoint in
--run-dir (a corrupt or truncated one is skipped with a warning). On CPU with
a fixed seed a run killed anywhere and resumed ends with bit-identical weights.
Checkpoints: every epoch (every --checkpoint-epochs) and every --checkpoint-minutes; the
last --keep are kept.
Log: <run-dir>/log.jsonl, one line per epoch (train loss, top-1/top-5 error,
validation 1-crop top-1/top-5, ε per group, images/s, seconds, devices).
Exit status: 0 done; 2 bad arguments, or the run directory is in use by
another process; 3 non-finite loss; 4 disk full (the previous checkpoint is
intact; the message says how much space is needed); 5 another torchrun rank
is gone (a node lost: the message names it; run every node's command again);
130 interrupted (a checkpoint was written first; under torchrun every rank
stops after the same step).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import operator
import sys
from pathlib import Path

from . import checkpoint, distributed
from .cli import check_at_least
from .config import PROFILES, AlexNetConfig
from .data.cache import Cache
from .engine import EXIT_DISK_FULL, EXIT_NONFINITE, EXIT_RANK_LOST, NonFiniteLoss, TrainOptions, fit


def add_config_args(ap: argparse.ArgumentParser) -> None:
    """Flags that mirror AlexNetConfig (defaults come from the profile)."""
    g = ap.add_argument_group("model and learning (default: the profile's value)")
    g.add_argument("--config", metavar="JSON",
                   help="a whole AlexNetConfig as JSON (config.json's \"config\", or what run_all writes for "
                        "a torchrun job); the flags below still override it")
    g.add_argument("--profile", choices=PROFILES, default="paper",
                   help="'paper' (the text) or 'cuda-convnet' (the released 2012 code)")
    g.add_argument("--epochs", type=int, help="epochs (paper: 90); schedules scale to shorter runs")
    g.add_argument("-b", "--batch-size", type=int, help="global batch (paper: 128)")
    g.add_argument("--lr", type=float, help="initial ε (paper: 0.01)")
    g.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.9)")
    g.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float,
                   help="weight decay (paper: 0.0005)")
    g.add_argument("--seed", type=int, help="seed for init, shuffling, augmentation, dropout")
    g.add_argument("--towers", type=int, choices=(1, 2), help="2, or 1 = footnote 2's one-GPU net")
    g.add_argument("--crop-size", type=int, choices=(224, 227), help="input crop (paper: 224)")
    g.add_argument("--no-lrn", dest="lrn", action="store_false", default=None, help="ablation: no LRN (§3.3)")
    g.add_argument("--pool-kernel", type=int, choices=(2, 3), help="3 overlapping (§3.4) or 2")
    g.add_argument("--activation", choices=("relu", "tanh"), help="relu (§3.1) or tanh")
    g.add_argument("--dropout", type=float, help="dropout p on fc6/fc7 (paper: 0.5; 0 = ablation)")
    g.add_argument("--no-pca-lighting", dest="pca_lighting", action="store_false", default=None,
                   help="ablation: no PCA colour augmentation (§4.1)")
    g.add_argument("--no-random-crops", dest="random_crops", action="store_false", default=None,
                   help="ablation: train on the centre patch, unflipped (§4.1's crops and reflections off)")
    g.add_argument("--no-conv4", dest="conv4", action="store_false", default=None,
                   help="ablation: without conv4, a middle conv layer (§7)")
    g.add_argument("--extra-conv6", action="store_true", default=None, help="1 CNN*: a sixth conv layer")
    g.add_argument("--bias-init", type=float,
                   help="the constant in the biases of conv2, conv4, conv5, fc6, fc7 (paper: 1; Caffe: 0.1; "
                        "reproduce/PAPER.md, 'Stability')")
    g.add_argument("--fc-bias-init", type=float,
                   help="fc6 and fc7's bias alone (default: --bias-init's); a recipe setting's")
    g.add_argument("--lr-warmup-epochs", type=float,
                   help="ε rises linearly over the first N epochs (not in the paper; default 0)")
    g.add_argument("--velocity-rescale", action="store_true", default=None,
                   help="scale the velocity with each change of ε (not the paper's rule: torch.optim.SGD's)")
    g.add_argument("--num-classes", type=int, help="default: the dataset's class count")
    g.add_argument("--lr-schedule", choices=("plateau", "cuda-convnet", "finetune", "step"),
                   help="plateau (§5), cuda-convnet (the recorded 2012 run), finetune (1 CNN*'s recorded "
                        "fine-tuning) or step (ε ÷ 10 after each of --lr-step-epochs: not the paper's, the "
                        "cpu-full scale's fixed schedule); default: the profile's")
    g.add_argument("--lr-step-epochs", type=int, nargs="+", metavar="EPOCH",
                   help="with --lr-schedule step: the epochs (from 1) after which ε ÷ 10")


def config_from_args(args, num_classes: int) -> AlexNetConfig:
    """--config's file (a whole AlexNetConfig, as run_all writes it) or the profile, with the flags on top."""
    fields = {f.name for f in dataclasses.fields(AlexNetConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None and k != "profile"}
    if args.config:
        return AlexNetConfig.from_dict({**json.loads(Path(args.config).read_text()), **overrides})
    overrides.setdefault("num_classes", num_classes)
    return AlexNetConfig.from_profile(args.profile, **overrides)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m alexnet.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a prepared dataset (python -m tools.prepare)")
    ap.add_argument("--run-dir", "--output-dir", dest="run_dir", required=True,
                    help="checkpoints and log.jsonl go here; rerun to resume")
    ap.add_argument("--resume", metavar="PATH",
                    help="start from this checkpoint (file or run directory) instead of the run directory's "
                         "own; the newer of the two (by step) is used, so rerunning never loses work")
    ap.add_argument("--init-from", metavar="CKPT",
                    help="start a fresh run from this checkpoint's weights (file or run directory), all but "
                         "fc8, which is new for this dataset: 1 CNN*'s fine-tuning (use with --lr-schedule "
                         "finetune and the pre-trained run's layers, e.g. --extra-conv6)")
    ap.add_argument("--devices",
                    help="tower devices, e.g. cuda:0,cuda:1 | cuda:0 | cpu (default: what exists)")
    ap.add_argument("-j", "--workers", type=int, default=None,
                    help="loader processes, which decode (and on a CPU augment) the images "
                         "(default: the cores, shared among this node's torchrun replicas)")
    ap.add_argument("--checkpoint-minutes", type=float, default=15.0,
                    help="also checkpoint mid-epoch this often")
    ap.add_argument("--checkpoint-epochs", type=int, default=1,
                    help="checkpoint at the end of every N-th epoch (and of the last one, and whenever "
                         "--checkpoint-minutes have passed): N > 1 where an epoch takes seconds")
    ap.add_argument("--checkpoint-steps", type=int, default=0, help="also checkpoint every N steps (0: off)")
    ap.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop after this many steps in total (0: no limit)")
    ap.add_argument("--train-batches", type=int, default=0,
                    help="short runs: use only the first N batches of each epoch's shuffled order (0: all)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-p", "--print-freq", type=int, default=0, metavar="N",
                    help="when stderr is not a terminal (a log file), a progress line every N steps "
                         "(0: none)")
    ap.add_argument("--fast", action="store_true",
                    help="fast mode: bf16 autocast, channels-last, TF32, torch.compile; NOT bit-faithful, "
                         "and labelled so in the log, checkpoints and evaluations (see alexnet/speed.py)")
    ap.add_argument("--no-compile", action="store_true", help="with --fast: skip torch.compile")
    ap.add_argument("--tower-streams", action="store_true",
                    help="both towers on one GPU: one CUDA stream per tower, so they "
                         "overlap (same arithmetic)")
    ap.add_argument("--resident", choices=("auto", "on", "off"), default="auto",
                    help="decode each split once into the loader device's memory and gather every batch from "
                         "it (the same batches as decoding them); auto: on a GPU when the decoded split fits "
                         "in a quarter of its free memory (the embedded sets; never ILSVRC)")
    ap.add_argument("--decoder", choices=("cpu", "gpu"), default="cpu",
                    help="where a GPU run decodes its JPEGs: cpu (the loader's worker processes, "
                         "libjpeg-turbo: decoding overlaps the step, and the pixels are a CPU run's) or gpu "
                         "(nvJPEG in the training process; it waits for the GPU before each batch)")
    ap.add_argument("--log-steps", action="store_true",
                    help="one JSON line per step in <run-dir>/steps.jsonl: loss, ε, fc8's input "
                         "norm, and each layer's largest |output| and gradient norm (slower on a "
                         "GPU: each step is waited for)")
    ap.add_argument("--tensorboard", action="store_true",
                    help="also write TensorBoard scalars to <run-dir>/tb (needs: pip install tensorboard)")
    ap.add_argument("--options", metavar="JSON",
                    help="the options above as one JSON object (config.json's \"options\", or what run_all "
                         "writes for a job); a flag given with a value other than its default overrides it")
    add_config_args(ap)
    args = ap.parse_args(argv)
    check_at_least(ap, args, {"epochs": 1, "batch_size": 1, "workers": 0, "keep": 1, "num_classes": 2,
                              "train_batches": 0, "max_steps": 0, "print_freq": 0, "checkpoint_epochs": 1})
    for name in ("momentum", "weight_decay"):
        value = getattr(args, name)
        if value is not None and not (0 <= value < math.inf):
            ap.error(f"--{name.replace('_', '-')}={value}: must be a number ≥ 0")
    if args.lr is not None and not (0 < args.lr < math.inf):
        ap.error(f"--lr={args.lr}: must be a positive number")
    return ap, args


def _same(value):
    return value


# Each TrainOptions field but `devices` (resolved by distributed.init): the flag that sets it (its
# argparse dest) and how the flag's value becomes the field's. Checked against TrainOptions below,
# so a new option cannot be left out of the command line or of a job's --options.
FLAG_OF = {
    **{field: (field, _same) for field in (
        "cache", "run_dir", "workers", "checkpoint_minutes", "checkpoint_epochs", "checkpoint_steps", "keep",
        "max_steps", "train_batches", "fast", "tower_streams", "tensorboard", "resume", "print_freq",
        "init_from", "decoder", "log_steps")},
    "progress": ("no_progress", operator.not_), "compile": ("no_compile", operator.not_),
    "resident": ("resident", {"auto": None, "on": True, "off": False}.get),
}
_FIELDS = {f.name for f in dataclasses.fields(TrainOptions)} - {"devices"}
if set(FLAG_OF) != _FIELDS:  # not an assert: `python -O` would drop it
    raise ImportError(f"alexnet.train: TrainOptions fields without a flag: {sorted(_FIELDS - set(FLAG_OF))}; "
                      f"flags without a field: {sorted(set(FLAG_OF) - _FIELDS)}")


def options_from_args(ap: argparse.ArgumentParser, args, devices) -> TrainOptions:
    """The flags as TrainOptions; with --options, that file's options with the flags given on top."""
    if not args.options:
        return TrainOptions(devices=devices,
                            **{f: conv(getattr(args, dest)) for f, (dest, conv) in FLAG_OF.items()})
    base = TrainOptions.from_dict(json.loads(Path(args.options).read_text()))
    given = {f: conv(getattr(args, dest)) for f, (dest, conv) in FLAG_OF.items()
             if getattr(args, dest) != ap.get_default(dest)}
    return dataclasses.replace(base, devices=devices, **given)


def resume_from(run_dir) -> str:
    """What running the job again does, after a rank was lost: which checkpoint it resumes from."""
    found = checkpoint.files(run_dir)
    if not found:
        return (f"{run_dir} has no checkpoint yet: running every node's command again starts the run "
                "from its beginning")
    newest = max(found, key=checkpoint.step_of)
    return (f"The newest checkpoint, {newest} (step {checkpoint.step_of(newest)}), is whole (rank 0 writes "
            "it, atomically): run every node's command again to resume from it, or give torchrun "
            "--max-restarts N to do so by itself")


def main(argv=None) -> int:
    ap, args = parse_args(argv)
    dist = distributed.Dist()  # one process until init says otherwise
    try:
        dist, devices = distributed.init(args.devices)
        cache = Cache(args.cache)
        cfg = config_from_args(args, num_classes=len(cache.classes))
        return fit(cfg, options_from_args(ap, args, devices), cache, dist)
    except ValueError as e:
        ap.error(str(e))
    except (checkpoint.RunLocked, distributed.RunDirNotShared) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NONFINITE
    except checkpoint.DiskFull as e:
        print(f"error: {e.strerror}", file=sys.stderr)
        return EXIT_DISK_FULL
    except RuntimeError as e:  # under torchrun: another rank gone mid-collective
        who = distributed.lost_rank(e, dist)
        if who is None:
            raise
        print(f"error: rank {dist.rank}: {who} is gone (its process killed, or its node lost): "
              f"{str(e).splitlines()[0][:300]}. {resume_from(args.run_dir)}", file=sys.stderr)
        return EXIT_RANK_LOST
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
