"""minioptim driven by Lightning 2.6 and the Hugging Face Trainer (issue 8).

Each run is compared with the same run under ``torch.optim`` (``foreach=False``), and a
run resumed from a checkpoint with the uninterrupted run. Tolerances, float32: resuming is
bit-identical (``EXACT``), as is the reference path against torch.optim; the default fast
path agrees to float rounding (``CLOSE``). Tiny models, data in memory, no downloads.
"""

import logging
import os

import lightning as L
import pytest
import torch
import transformers
from lightning.pytorch.callbacks import BaseFinetuning, ModelCheckpoint
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import minioptim

pytestmark = [
    # Lightning 2.6 under torch 2.13; a note that manual-optimization checkpoints hold the
    # state after the step, which is what resuming needs; a resumed run that checkpoints into
    # the directory it resumes from
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated"),
    pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
    # tiny models run fastest on one thread, and do not slow down on a busy CI machine
    pytest.mark.usefixtures("one_thread"),
]

EXACT = dict(rtol=0, atol=0)
CLOSE = dict(rtol=1e-5, atol=1e-6)
TOLERANCE = {"reference": EXACT, "auto": CLOSE}


def adamw(library, params, impl="auto", **options):
    options = dict(lr=0.05, weight_decay=0.1) | options
    extra = dict(foreach=False) if library is torch.optim else dict(impl=impl)
    return library.AdamW(params, **options, **extra)


def assert_same_models(ours: nn.Module, theirs: nn.Module, **tolerance) -> None:
    ours, theirs = ours.state_dict(), theirs.state_dict()
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], **(tolerance or EXACT), msg=key)


def assert_moved(net: nn.Module, initial: nn.Module) -> None:
    for (key, p), q in zip(net.state_dict().items(), initial.state_dict().values(), strict=True):
        assert not torch.equal(p, q), f"{key} did not train"


# -- Lightning ---------------------------------------------------------------------------

BATCHES = 8  # per epoch; with accumulate_grad_batches=2, 4 optimizer steps per epoch


@pytest.fixture(autouse=True)
def quiet_lightning():
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def loader() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4 * BATCHES, 4, generator=gen)
    return DataLoader(TensorDataset(x, x[:, :1].sin() + x[:, 1:2]), batch_size=4)


class Regression(L.LightningModule):
    """A tiny MLP; configure_optimizers returns AdamW and a step-interval StepLR."""

    def __init__(self, library, impl="auto", manual=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.library, self.impl = library, impl
        self.automatic_optimization = not manual
        self.clip_norms = []

    def loss(self, batch):
        x, y = batch
        return 100 * nn.functional.mse_loss(self.net(x), y)  # large enough to clip

    def training_step(self, batch, index):
        if self.automatic_optimization:
            return self.loss(batch)
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        optimizer.zero_grad()
        self.manual_backward(self.loss(batch))
        self.clip_norms.append(self.gradient_norm())
        self.clip_gradients(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        optimizer.step()
        schedule.step()

    def gradient_norm(self) -> float:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        return nn.utils.get_total_norm(grads).item()

    def on_before_optimizer_step(self, optimizer):  # before Lightning clips
        if self.automatic_optimization:
            self.clip_norms.append(self.gradient_norm())

    def configure_optimizers(self):
        optimizer = adamw(self.library, self.parameters(), self.impl)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def steps_per_epoch(manual: bool) -> int:
    return BATCHES if manual else BATCHES // 2


def trainer(max_steps, manual=False, checkpoints=None, callbacks=()):
    """Checkpoints, if asked for, after every epoch's worth of steps (``every_n_train_steps``).

    Lightning 2.6 resumes from those exactly as the uninterrupted run goes on, under either
    library. From an ``every_n_epochs`` checkpoint it does not (torch.optim's resumed run
    differs too), and from a mid-epoch one only with a resumable dataloader."""
    options = {} if manual else dict(accumulate_grad_batches=2, gradient_clip_val=0.5)
    callbacks = list(callbacks)
    if checkpoints:
        every = steps_per_epoch(manual)
        callbacks.append(ModelCheckpoint(checkpoints, every_n_train_steps=every, save_top_k=-1))
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=bool(checkpoints),
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=max_steps,
        callbacks=callbacks,
        **options,
    )


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
def test_lightning_accumulation_clipping_scheduler_and_resume(tmp_path, impl, manual):
    """Automatic optimization: ``accumulate_grad_batches=2``, ``gradient_clip_val=0.5``.
    Manual: ``zero_grad``, ``manual_backward``, ``clip_gradients`` and ``step`` in
    ``training_step``. Both: a step-interval StepLR, a checkpoint after the first epoch, and
    ``trainer.fit(ckpt_path=...)`` from it."""
    steps = 2 * steps_per_epoch(manual)  # two epochs
    ours = Regression(minioptim, impl, manual)
    fit = trainer(steps, manual, checkpoints=tmp_path)
    fit.fit(ours, loader())
    assert fit.global_step == steps
    assert fit.optimizers[0].param_groups[0]["lr"] == 0.05 * 0.5 ** (steps // 3)
    assert max(ours.clip_norms) > 0.5  # clipping was active

    theirs = Regression(torch.optim, manual=manual)
    trainer(steps, manual).fit(theirs, loader())
    assert_same_models(ours, theirs, **TOLERANCE[impl])
    assert_moved(ours, Regression(minioptim))

    checkpoint = tmp_path / f"epoch=0-step={steps // 2}.ckpt"
    assert checkpoint.exists(), os.listdir(tmp_path)
    resumed = Regression(minioptim, impl, manual)
    trainer(steps, manual, checkpoints=tmp_path).fit(resumed, loader(), ckpt_path=checkpoint)
    assert_same_models(resumed, ours)  # bit-identical


class Finetuning(BaseFinetuning):
    """A fine-tuning callback that records net[0] at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append([p.detach().clone() for p in pl_module.net[0].parameters()])


class FreezeThenThaw(Finetuning):
    """Freezes net[0] for epoch 1 and thaws it for epoch 2; all parameters are in the
    optimizer from the start."""

    def freeze_before_training(self, pl_module):
        pass

    def finetune_function(self, pl_module, epoch, optimizer):
        if epoch == 1:
            self.freeze(pl_module.net[0], train_bn=True)
        elif epoch == 2:
            self.make_trainable(pl_module.net[0])


@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_lightning_finetuning_callback_freezes_mid_training_as_torch(impl):
    runs = []
    for library in (minioptim, torch.optim):
        model, callback = Regression(library, impl), FreezeThenThaw()
        trainer(12, callbacks=[callback]).fit(model, loader())  # 3 epochs
        before, frozen, thawed = callback.snapshots
        assert all(torch.equal(a, b) for a, b in zip(before, frozen, strict=True))
        assert not any(torch.equal(a, b) for a, b in zip(frozen, thawed, strict=True))
        runs.append(model)
    assert_same_models(*runs, **TOLERANCE[impl])


class Backbone(Regression):
    """The BackboneFinetuning pattern: the optimizer starts with the trainable parameters."""

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        return adamw(self.library, trainable, self.impl)


class AddBackboneAtEpoch1(Finetuning):
    """Freezes net[0] before training, then thaws it into a second param group."""

    def freeze_before_training(self, pl_module):
        self.freeze(pl_module.net[0])

    def finetune_function(self, pl_module, epoch, optimizer):
        if epoch == 1:
            self.unfreeze_and_add_param_group(pl_module.net[0], optimizer, lr=0.01)


@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_lightning_unfreeze_and_add_param_group_as_torch(impl):
    runs = []
    for library in (minioptim, torch.optim):
        model = Backbone(library, impl)
        initial = [p.detach().clone() for p in model.net[0].parameters()]
        callback = AddBackboneAtEpoch1()
        fit = trainer(8, callbacks=[callback])
        fit.fit(model, loader())
        assert len(fit.optimizers[0].param_groups) == 2
        frozen, thawed = callback.snapshots
        assert all(torch.equal(a, b) for a, b in zip(initial, frozen, strict=True))
        assert not any(torch.equal(a, b) for a, b in zip(frozen, thawed, strict=True))
        runs.append(model)
    assert_same_models(*runs, **TOLERANCE[impl])


# -- Hugging Face Trainer ------------------------------------------------------------------

HF_STEPS, HF_SAVE = 4, 2


class Sentences(Dataset):
    """32 random token sequences with binary labels, in memory."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(1, 99, (32, 12), generator=gen)
        self.labels = torch.randint(0, 2, (32,), generator=gen)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": self.labels[i],
        }


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=99,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def hf_train(library, output_dir, resume=None, pattern="optimizers"):
    """Dropout on, gradient accumulation 2, clipping at 1.0 (the default), a warmup schedule,
    a checkpoint halfway; the Trainer sets gradients to None after each step.

    ``pattern="optimizers"``: the optimizer and schedule are made here and passed in;
    ``"optimizer_cls_and_kwargs"``: the Trainer makes the optimizer (two param groups: no
    weight decay on biases and LayerNorm) and its own linear schedule with warmup.
    """
    model = tiny_bert()
    options = {}
    if pattern == "optimizers":
        optimizer = adamw(library, model.parameters(), lr=1e-3, weight_decay=0.01)
        schedule = transformers.get_linear_schedule_with_warmup(optimizer, 2, HF_STEPS)
        options["optimizers"] = (optimizer, schedule)
    else:
        extra = dict(foreach=False) if library is torch.optim else {}
        options["optimizer_cls_and_kwargs"] = (library.AdamW, dict(lr=1e-3, **extra))
    args = transformers.TrainingArguments(
        output_dir=str(output_dir),
        report_to=[],
        use_cpu=True,
        max_steps=HF_STEPS,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        weight_decay=0.01,  # used by "optimizer_cls_and_kwargs"
        warmup_steps=2,
        save_strategy="steps",
        save_steps=HF_SAVE,
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Sentences(), **options)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    assert trainer.state.global_step == HF_STEPS
    assert isinstance(trainer.optimizer.optimizer, library.AdamW)  # inside accelerate's wrapper
    return model, trainer


def test_hugging_face_trainer_resumes_exactly_and_trains_as_torch(tmp_path):
    ours, _ = hf_train(minioptim, tmp_path / "ours")
    checkpoint = tmp_path / "ours" / f"checkpoint-{HF_SAVE}"
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert sorted(saved) == sorted(tiny_bert().state_dict())  # nothing dropped as "shared"
    assert_moved(ours, tiny_bert())

    resumed, _ = hf_train(minioptim, tmp_path / "resumed", resume=checkpoint)
    assert_same_models(resumed, ours)  # bit-identical

    theirs, _ = hf_train(torch.optim, tmp_path / "theirs")
    assert_same_models(ours, theirs, **CLOSE)


def test_hugging_face_trainer_builds_minioptim_from_cls_and_kwargs(tmp_path):
    ours, trainer = hf_train(minioptim, tmp_path / "ours", pattern="optimizer_cls_and_kwargs")
    decays = [group["weight_decay"] for group in trainer.optimizer.param_groups]
    assert decays == [0.01, 0.0]
    theirs, _ = hf_train(torch.optim, tmp_path / "theirs", pattern="optimizer_cls_and_kwargs")
    assert_same_models(ours, theirs, **CLOSE)
    assert_moved(ours, tiny_bert())
