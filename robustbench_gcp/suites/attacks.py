"""Adversarial attacks for the adversarial suite: foolbox 3 on the device, stored per (attack, epsilon).

The model is attacked on [0, 1] inputs; ImageNet normalization sits in the
foolbox model's ``preprocessing``; the network is in eval mode, so gradients flow
through the pooling head (Newton-Schulz by default for iSQRT-COV).

Counting (per image, per epsilon): ``clean_errors`` (misclassified without
attack), ``successes`` (correctly classified images that the attack flips) and
``robust`` (correct and not flipped). Robust accuracy = robust / n; success rate =
successes / (n - clean_errors). For one attack, an image broken at epsilon e is
counted as broken at every larger epsilon (an adversarial example inside the
e-ball lies inside every larger ball), so robust accuracy never rises with
epsilon even when an iterative attack is not monotone.

Minimization attacks (DeepFool, Carlini-Wagner) run once without early stopping;
each image's perturbation size ``||x_adv - x||`` is stored (0 for images already
misclassified, inf where the attack failed), and the report gives their median. The share of
sizes above epsilon bounds robust accuracy from above only: the stored robust accuracy at
epsilon projects the adversarial into the epsilon-ball, which may still fool the model where
the size exceeds epsilon (an overshot DeepFool), so the sizes do not give the curve at other
epsilons.

Randomness: PGD's random start draws, per image, from a generator seeded by
(run seed, cell, image index), so any batch size gives the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from corruptions import from_uint8
from robustbench_gcp.engine.classifier import finite, frozen_weights, gradient_error
from robustbench_gcp.engine.device import memory_message, out_of_memory
from robustbench_gcp.engine.runner import Context, ImageSource
from robustbench_gcp.errors import ConfigError, DeviceMemoryError, UnknownNameError, suggest
from robustbench_gcp.store import CellKey, ShardResult, canonical_json
from robustbench_gcp.suites.revisions import ATTACK_REVISIONS, REVISION, mark

#: attack name -> the norm of its budget
ATTACKS = {
    "fgsm": "linf",
    "pgd-linf": "linf",
    "pgd-l2": "l2",
    "deepfool-linf": "linf",
    "deepfool-l2": "l2",
    "cw-l2": "l2",
}
#: the budget keys each attack accepts in benchmarks.yaml
ATTACK_KEYS = {
    "fgsm": ("epsilons", "random_start"),
    "pgd-linf": ("epsilons", "steps", "rel_stepsize", "random_start"),
    "pgd-l2": ("epsilons", "steps", "rel_stepsize", "random_start"),
    "deepfool-linf": ("epsilons", "steps", "candidates", "overshoot"),
    "deepfool-l2": ("epsilons", "steps", "candidates", "overshoot"),
    "cw-l2": ("epsilons", "steps", "binary_search_steps", "stepsize", "confidence",
              "initial_const"),
}


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: its epsilons (ascending, each once; a Linf budget within 1e-6 / 255 of
    k / 255 is k / 255: see :func:`snap_epsilon`) and budget settings."""

    attack: str
    epsilons: tuple[float, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        norm = ATTACKS.get(self.attack)
        epsilons = tuple(sorted({snap_epsilon(e, norm) for e in self.epsilons}))
        object.__setattr__(self, "epsilons", epsilons)

    @property
    def norm(self) -> str:
        return ATTACKS[self.attack]


MINIMIZATION = ("deepfool-linf", "deepfool-l2", "cw-l2")

#: budgets used when an attack is asked for on the command line but not configured in the suite
DEFAULT_BUDGETS = {
    "fgsm": {},
    "pgd-linf": {"steps": 10, "rel_stepsize": 0.25, "random_start": True},
    "pgd-l2": {"steps": 10, "rel_stepsize": 0.25, "random_start": True},
    "deepfool-linf": {"steps": 50, "candidates": 10, "overshoot": 0.02},
    "deepfool-l2": {"steps": 50, "candidates": 10, "overshoot": 0.02},
    "cw-l2": {"steps": 100, "binary_search_steps": 5, "stepsize": 0.01, "confidence": 0.0,
              "initial_const": 0.001},
}
DEFAULT_EPSILONS = {"linf": (1 / 255, 2 / 255, 4 / 255), "l2": (0.25, 0.5, 1.0)}


def attack_suggestion(name: str) -> str:
    """" Did you mean ...?" for an unknown attack name. A bare family name lists the family,
    Linf first: ``pgd`` most often means the standard Linf PGD, which plain closeness
    (``pgd-l2``, the shorter name) would not suggest."""
    family = [a for a in ATTACKS if a.startswith(f"{name.lower()}-")]
    if family:
        family.sort(key=lambda a: ATTACKS[a] != "linf")
        return f" Did you mean {' or '.join(repr(a) for a in family)}?"
    return suggest(name, ATTACKS)


class UnknownAttackError(UnknownNameError):
    """An attack name that does not exist (a family name such as ``pgd`` lists its variants)."""

    def __init__(self, name: str):
        super().__init__("attack", name, ATTACKS)
        self.args = (f"unknown attack '{name}'.{attack_suggestion(name)}",)


class AttackMemoryError(DeviceMemoryError):
    """An attack needed more memory than the device has (the engine adds the cell and shard)."""


#: one thread imports foolbox at a time (its first import changes process-wide state, below)
_FOOLBOX_IMPORT = threading.Lock()


def _foolbox():
    """foolbox. Its first import is made without its imports' warnings (scipy's deprecations: a
    caller's ``-W error`` failed the adversarial suite, helper-266; warnings filters are the
    process's, so another thread's warnings are not shown during it) and with ``GIT_PYTHON_REFRESH``
    set for its GitPython import only (where git is missing it raises), the caller's environment
    restored after it; under a lock, so that another thread waits for the whole module."""
    with _FOOLBOX_IMPORT:
        if "foolbox" in sys.modules:  # (None there, a blocked import, raises ImportError as before)
            import foolbox

            return foolbox
        unset = "GIT_PYTHON_REFRESH" not in os.environ
        os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import foolbox
        finally:
            if unset:
                os.environ.pop("GIT_PYTHON_REFRESH", None)
        return foolbox


def parse_epsilon(text: str, flag: str = "--epsilons") -> float:
    """``"0.5"``, ``"2/255"`` -> float; a clear error naming ``flag`` otherwise."""
    try:
        return epsilon_value(text, "numbers" if flag.endswith("s") else "a number")
    except ValueError as error:
        raise ConfigError(f"`{flag}` {error}") from None


def epsilon_value(text: str, wanted: str = "a number") -> float:
    """``"0.5"``, ``"2/255"`` -> float.

    Raises:
        ValueError: saying what it should be (``should be {wanted} such as 0.5 or 2/255``), for a
            message to name the place.
    """
    try:
        if "_" in text:  # float() takes 1_0 for 10: a slip, never a budget
            raise ValueError
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            value = float(numerator) / float(denominator)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"should be {wanted} such as 0.5 or 2/255. Got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"should be finite and >= 0. Got {text}")
    if value <= 2.0 ** -150 and re.search(r"[1-9]", re.split(r"[eE]", text.split("/", 1)[0])[0]):
        # the attacks perturb float32 images: up to half its smallest number a budget rounds to 0
        # (1e-45 rounds up to 1.4e-45; 2**-150 to 0, the even neighbour)
        raise ValueError(f"should be 0 or above 7e-46 (half of float32's smallest number, 1.4e-45). Got "
                         f"{text}, which rounds to 0")
    return value


def check_epsilons(attack: str, epsilons: Sequence[float], *, other_attacks: bool = True,
                   flag: str | None = None) -> None:
    """Catch budgets on the wrong scale (epsilons are on the [0, 1] pixel scale), and two
    budgets that reports would show alike (4/255 and 0.0156862745: two cells, one label);
    ``other_attacks``: whether the caller may choose an L2 attack instead (``bench attack`` runs
    PGD-Linf alone); ``flag``: the option the epsilons came from, named in the error."""
    at = f"`{flag}`: " if flag else ""
    shown: dict[str, float] = {}
    for eps in epsilons:
        text = format_epsilon(eps, ATTACKS[attack])
        if shown.setdefault(text, eps) != eps:
            raise ConfigError(f"{at}epsilons {shown[text]!r} and {eps!r} of {attack} are both {text} in "
                              "reports: give that budget once")
    if ATTACKS[attack] != "linf":
        return
    for eps in epsilons:
        if eps >= 1:
            # a whole number reads as pixel levels (8: 8/255); another (300/255) is not such a slip
            advice = (f"did you mean {eps:g}/255?" if float(eps).is_integer() and eps <= 255
                      else "Linf budgets are usually 1/255 to 16/255")
            raise ConfigError(
                f"{at}epsilon {eps:g} for the Linf attack {attack} is not on the [0, 1] pixel scale: {advice}"
            )
        if eps > 0.25:
            l2 = attack.replace("linf", "l2") if attack != "fgsm" else "pgd-l2"
            instead = f"; if you meant an L2 budget, use {l2} (" if other_attacks else " ("
            raise ConfigError(
                f"{at}epsilon {eps:g} for the Linf attack {attack} would let every pixel move by "
                f"{eps:.0%} of its range{instead}Linf budgets are usually 1/255 to 16/255)"
            )


def select_attacks(
    configured: Sequence[AttackSpec],
    names: Sequence[str] | None = None,
    epsilons: Sequence[float] | None = None,
    steps: int | None = None,
) -> tuple[AttackSpec, ...]:
    """The suite's attacks, narrowed and overridden by ``--attacks/--epsilons/--steps``."""
    by_name = {spec.attack: spec for spec in configured}
    if names:
        chosen = []
        for name in names:
            if name not in ATTACKS:
                raise UnknownAttackError(name)
            chosen.append(by_name.get(name) or AttackSpec(
                name, DEFAULT_EPSILONS[ATTACKS[name]], dict(DEFAULT_BUDGETS[name])))
    else:
        chosen = list(configured)
    if epsilons is not None:
        norms = {spec.norm for spec in chosen}
        if len(norms) > 1:
            raise ConfigError(
                "`--epsilons` applies to every chosen attack, but they mix Linf and L2 budgets ("
                + ", ".join(f"{s.attack}: {s.norm}" for s in chosen)
                + "); choose attacks of one norm with --attacks"
            )
        chosen = [AttackSpec(s.attack, tuple(epsilons), s.params) for s in chosen]
    if steps is not None:  # applies to the iterative attacks among the chosen ones
        if not any("steps" in ATTACK_KEYS[s.attack] for s in chosen):
            only = ", ".join(s.attack for s in chosen)
            raise ConfigError(f"`--steps` does not apply to {only} (a single-step attack)")
        chosen = [AttackSpec(s.attack, s.epsilons, {**s.params, "steps": steps})
                  if "steps" in ATTACK_KEYS[s.attack] else s for s in chosen]
    for spec in chosen:  # the suite's were checked when read: any at fault are --epsilons'
        check_epsilons(spec.attack, spec.epsilons, flag="--epsilons")
    return tuple(chosen)


def _seeded(base):
    """A PGD subclass whose random start draws per image from seeded generators."""

    class Seeded(base):
        seeds: Sequence[int] | None = None

        def get_random_start(self, x0, epsilon):
            import eagerpy as ep

            from corruptions._draws import draw_in_chunks  # the same numbers on every GPU
            from corruptions._ops import exact_dtype  # float64 (MPS: float32, it has no float64)

            x = x0.raw
            noise = torch.empty_like(x)
            for i, seed in enumerate(self.seeds):
                g = torch.Generator(device=x.device).manual_seed(int(seed))
                if self.distance.p == math.inf:
                    start = draw_in_chunks(torch.empty(x.shape[1:], device=x.device, dtype=x.dtype), g,
                                           lambda view, gen: view.uniform_(generator=gen))
                    noise[i] = (start * 2 - 1) * epsilon
                else:  # uniform in the L2 ball (Voelker et al.): n + 2 normals, keep n
                    n = x[i].numel()
                    s = draw_in_chunks(torch.empty(n + 2, device=x.device, dtype=exact_dtype(x.device)), g,
                                       lambda view, gen: view.normal_(generator=gen))
                    noise[i] = (s[:n] / s.norm()).reshape(x.shape[1:]).to(x.dtype) * epsilon
            return ep.astensor(x + noise)

    Seeded.__name__ = f"Seeded{base.__name__}"
    return Seeded


def make_attack(spec: AttackSpec, num_classes: int):
    """The foolbox attack object of ``spec``."""
    fa = _foolbox().attacks
    p = dict(DEFAULT_BUDGETS[spec.attack], **spec.params)
    if spec.attack == "fgsm":
        return _seeded(fa.LinfFastGradientAttack)(random_start=p.get("random_start", False))
    if spec.attack in ("pgd-linf", "pgd-l2"):
        base = fa.LinfPGD if spec.attack == "pgd-linf" else fa.L2PGD
        return _seeded(base)(rel_stepsize=p["rel_stepsize"], steps=p["steps"],
                             random_start=p["random_start"])
    if spec.attack in ("deepfool-linf", "deepfool-l2"):
        base = fa.LinfDeepFoolAttack if spec.attack == "deepfool-linf" else fa.L2DeepFoolAttack
        return base(steps=p["steps"], candidates=min(p["candidates"], num_classes),
                    overshoot=p["overshoot"])
    # abort_early=False: foolbox's early stop tests the loss summed over the batch, so an image's
    # steps (and result) depended on the images batched with it (13 of 30 sizes moved with --batch-size)
    return fa.L2CarliniWagnerAttack(binary_search_steps=p["binary_search_steps"], steps=p["steps"],
                                    stepsize=p["stepsize"], confidence=p["confidence"],
                                    initial_const=p["initial_const"], abort_early=False)


class _Precision(torch.nn.Module):
    """Autocast and channels-last around the model; float32 logits out."""

    def __init__(self, model: torch.nn.Module, amp: bool, amp_dtype: torch.dtype, channels_last: bool):
        super().__init__()
        self.model, self.amp, self.amp_dtype, self.channels_last = model, amp, amp_dtype, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # frozen while the graph is built: its backward skips every weight gradient
        with frozen_weights(self.model), torch.autocast(x.device.type, dtype=self.amp_dtype,
                                                        enabled=self.amp):
            return self.model(x).float()


def foolbox_model(ctx: Context):
    """The foolbox PyTorchModel of the context's classifier (built once)."""
    cached = ctx.cache.get("foolbox_model")
    if cached is None:
        c = ctx.classifier
        # Attacks need gradients with respect to the input only: _Precision freezes the weights
        # during each forward pass (frozen_weights), not for good
        net = _Precision(c.model, c.amp, c.amp_dtype, c.channels_last).eval()
        preprocessing = {"mean": c.mean.flatten().tolist(), "std": c.std.flatten().tolist(), "axis": -3}
        cached = _foolbox().PyTorchModel(net, bounds=(0, 1), device=c.device, preprocessing=preprocessing)
        ctx.cache["foolbox_model"] = cached
    return cached


def epsilon_level(eps: float) -> str:
    """An epsilon as a cell key's level: exact (``repr``), so that the key never changes."""
    return repr(float(eps))


def _levels(eps: float, norm: str | None) -> int | None:
    """k where a Linf ``eps`` is k/255 (k >= 1) up to 1e-6 / 255, else None."""
    if norm != "linf" or not math.isfinite(eps):
        return None
    k = round(eps * 255)
    return k if k >= 1 and abs(eps * 255 - k) < 1e-6 else None


def snap_epsilon(eps: float, norm: str | None) -> float:
    """A Linf budget within 1e-6 / 255 of k/255 (0.0627450980 from a YAML file) is k/255 exactly,
    so that it is the same cell as ``--epsilons 16/255`` and pairs with it in comparisons."""
    k = _levels(eps, norm)
    return k / 255 if k is not None else eps + 0.0  # -0 is 0 (one cell, one label)


def format_epsilon(eps: float, norm: str, digits: int = 6) -> str:
    """Linf budgets as k/255 when they are exactly (what :func:`snap_epsilon` makes), or k/255 of
    a k with two decimals at most where shorter (0.5/255, not 0.00196078), others as ``digits``
    significant digits (1e-09, not 0/255; a cell stored before 0.7.7 with 0.0627450980 as
    0.0627451, apart from 16/255)."""
    k = _levels(eps, norm)
    if k is not None and eps == k / 255:
        return f"{k}/255"
    plain = f"{eps:.{digits}g}"
    part = round(eps * 255, 2) if norm == "linf" and math.isfinite(eps) else 0.0
    levels = f"{part:g}/255"  # where it is the shorter (0.3 stays 0.3, not 76.5/255)
    return levels if 0 < part < 255 and part / 255 == eps and len(levels) <= len(plain) else plain


@dataclass(frozen=True)
class AttackTask:
    """All epsilons of one attack on a batch: one cell per epsilon."""

    spec: AttackSpec
    source: ImageSource
    num_classes: int
    keys: tuple[CellKey, ...] = field(init=False)

    def __post_init__(self):
        variant = canonical_json({"epsilons": list(self.spec.epsilons),
                                  **dict(DEFAULT_BUDGETS[self.spec.attack], **self.spec.params),
                                  **mark(ATTACK_REVISIONS.get(self.spec.attack, 1))})
        keys = tuple(CellKey("adversarial", self.spec.attack, epsilon_level(e), variant)
                     for e in self.spec.epsilons)
        object.__setattr__(self, "keys", keys)

    @property
    def progress_label(self) -> str:
        """The task's name in progress bars, its epsilons short: ``adversarial/pgd-linf eps
        1/255,2/255,4/255`` (more than 3: ``eps 1/255..16/255 (5)``) rather than the cell keys' exact
        ``0.00392156862745098``, which squeezes the bars."""
        eps = [format_epsilon(epsilon, self.spec.norm, 3) for epsilon in self.spec.epsilons]
        shown = ",".join(eps) if len(eps) <= 3 else f"{eps[0]}..{eps[-1]} ({len(eps)})"
        return f"adversarial/{self.spec.attack} eps {shown}"

    def process(
        self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], ctx: Context
    ) -> list[ShardResult]:
        try:
            return self._process(images, labels, indices, ctx)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            if out_of_memory(error):
                raise AttackMemoryError(memory_message(f"attack {self.spec.attack}", images.shape[0],
                                                       ctx.device, error)) from None
            if (failure := gradient_error(error, f"attack {self.spec.attack}")) is not None:
                raise failure from error
            raise

    def adversarials(
        self, x: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], ctx: Context
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Adversarial examples of ``x`` (in [0, 1]) at every epsilon, and for minimization
        attacks the unclipped minimal adversarial examples.

        The attacks' ``run`` is called directly (foolbox's ``__call__`` would spend one
        more forward pass on success flags that are recounted here anyway). Each example
        is projected onto its epsilon-ball and the [0, 1] box (in float64, against
        float32 rounding in the attack), so it lies inside both; for a minimization attack
        this is foolbox's clipping of the minimal perturbation to epsilon.
        """
        fmodel = foolbox_model(ctx)
        attack = make_attack(self.spec, self.num_classes)
        minimal = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if self.spec.attack in MINIMIZATION:
                minimal = without_placeholders(attack.run(fmodel, x, labels, early_stop=None).detach(), x)
                found = [minimal] * len(self.spec.epsilons)
            else:
                found = []
                for key, eps in zip(self.keys, self.spec.epsilons):
                    if hasattr(attack, "seeds"):
                        attack.seeds = ctx.seeds(key.label, indices)
                    found.append(attack.run(fmodel, x, labels, epsilon=eps))
        return [self._project(x, adv, eps) for adv, eps in zip(found, self.spec.epsilons)], minimal

    def _project(self, x: torch.Tensor, adversarial: torch.Tensor, eps: float) -> torch.Tensor:
        from corruptions._ops import exact_dtype  # float64 (MPS: float32, it has no float64)

        wide = exact_dtype(x.device)
        x_wide = x.to(wide)
        delta = (adversarial.detach() - x).to(wide)  # differenced in x's dtype, then widened
        linf = self.spec.norm == "linf"
        if linf:
            delta = delta.clamp(-eps, eps)
        else:
            norm = delta.flatten(1).norm(dim=1).clamp_min(1e-30)
            delta = delta * (eps / norm).clamp(max=1.0).view(-1, *[1] * (delta.ndim - 1))
        # x in [0, 1]: clamping to the box only shrinks each coordinate of delta
        projected = (x_wide + delta).clamp(0.0, 1.0).to(x.dtype)
        if linf:  # the cast rounds up to half a step beyond eps: one step in
            over = (projected.to(wide) - x_wide).abs() > eps
            projected = torch.where(over, torch.nextafter(projected, x), projected)
        return projected

    def _process(self, images, labels, indices, ctx) -> list[ShardResult]:
        x = from_uint8(images)
        fmodel = foolbox_model(ctx)

        def predicted(images: torch.Tensor) -> torch.Tensor:
            return finite(fmodel(images), amp=ctx.classifier.amp).argmax(-1)

        with torch.no_grad():
            clean_correct = predicted(x) == labels
        adversarials, minimal = self.adversarials(x, labels, indices, ctx)
        with torch.no_grad():
            fooled = [predicted(adv) != labels for adv in adversarials]
            sizes = None
            if minimal is not None:
                success = predicted(minimal) != labels
                sizes = self._sizes(minimal, x, success, clean_correct)
        n = len(indices)
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        results = []
        for flipped in fooled:
            broken = broken | (flipped & clean_correct)
            robust = clean_correct & ~broken
            # left on the device: the shard's accumulator brings them to the host once (4 host syncs
            # per epsilon and batch were)
            counts = {"clean_errors": (~clean_correct).sum(), "successes": broken.sum(),
                      "robust": robust.sum()}
            results.append(ShardResult(n, counts, robust, sizes))
        return results

    def _sizes(self, adversarial, x, success, clean_correct) -> torch.Tensor:
        """Per-image perturbation size of a minimization attack (0: already wrong; inf: failed)."""
        delta = (adversarial - x).flatten(1)
        norm = delta.abs().amax(1) if ATTACKS[self.spec.attack] == "linf" else delta.norm(dim=1)
        norm = torch.where(success, norm, torch.full_like(norm, math.inf))
        norm = torch.where(clean_correct, norm, torch.zeros_like(norm))
        return norm.detach().float()  # to the host with the shard


def without_placeholders(minimal: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A minimization attack's output, with the images it found no adversarial for left as they
    are: foolbox's C&W returns all zeros for them (its initial ``best_advs``), which a black image's
    misclassification would otherwise pass for an adversarial of the size of the image (and its
    clipping to an epsilon, for a step towards black). DeepFool returns its last iterate, kept."""
    failed = (minimal == 0).flatten(1).all(1) & (x != 0).flatten(1).any(1)
    return torch.where(failed.view(-1, *[1] * (x.ndim - 1)), x, minimal)


def budget_of(key: CellKey) -> dict:
    """The attack budget an adversarial cell was measured with (its variant without the epsilons)."""
    budget = json.loads(key.variant or "{}")
    budget.pop("epsilons", None)
    budget.pop(REVISION, None)
    return budget


def budget_tag(attack: str, budget: dict) -> str:
    """The settings of ``budget`` that differ from the attack's defaults ("steps=2"), or ""."""
    defaults = DEFAULT_BUDGETS.get(attack, {})
    return ", ".join(f"{k}={v}" for k, v in sorted(budget.items()) if defaults.get(k) != v)
