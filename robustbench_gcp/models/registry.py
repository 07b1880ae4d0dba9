"""The model registry: names -> entry-point functions (timm style).

A model variant is a tiny function decorated with :func:`register_model` that
calls one builder; :func:`robustbench_gcp.models.create_model` looks it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from robustbench_gcp.errors import ConfigError, UnknownNameError

__all__ = ["list_models", "model_entrypoint", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str | F) -> F | Callable[[F], F]:
    """Register a model entry point under ``name``.

    Use as ``@register_model("resnet50-isqrt")`` or bare ``@register_model``,
    which registers the function name with ``_`` replaced by ``-``. The entry
    point takes keyword arguments (``num_classes``, ``reduction_dim``, ``sqrt``,
    ``ns_iters``) and returns a model.

    Raises:
        ValueError: ``name`` is already registered.

    Example:
        >>> @register_model("tiny-resnet-gap")  # doctest: +SKIP
        ... def tiny_resnet_gap(**kwargs):
        ...     return build_resnet("basic", (1, 1, 1), head="gap", **kwargs)
    """
    if callable(name):
        return register_model(name.__name__.replace("_", "-"))(name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` should be a non-empty string. Got {name!r}")

    def decorator(fn: F) -> F:
        if name in _MODELS:
            raise ValueError(
                f"model '{name}' is already registered (by {_MODELS[name].__module__}."
                f"{_MODELS[name].__name__}); choose another name"
            )
        _MODELS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The entry point registered as ``name``.

    Raises:
        UnknownNameError: no such model (the message suggests the closest name).
        ConfigError: ``name`` is not text.
    """
    if not isinstance(name, str):  # a Path was "unknown model 'resnet18-gap'. Did you mean 'resnet18-gap'?"
        raise ConfigError(f"`name` should be a model name (text; list_models() lists them). Got {name!r}")
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, _MODELS, listing="See list_models()") from None
