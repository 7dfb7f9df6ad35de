"""Which methods exist: a registry of method classes and their config sections.

A method is one module in ``trainer/methods/`` holding its :class:`~trainer.methods.base.Method`
subclass and its config section (a pydantic model), tied together by :func:`register_method`::

    class ToyConfig(StrictModel):
        scale: float = 2.0

    @register_method("toy", ToyConfig, backbone="vit")
    class Toy(Method):
        @classmethod
        def build(cls, section, image_encoder, text_encoder, num_classes):
            return cls(section.scale)

Nothing else is edited: a recipe names it (``model.method: {name: toy, toy: {scale: 3}}``),
:class:`~trainer.config.ModelConfig` validates the section and ``build_model`` builds it.

The recipe's ``model.method`` is a tagged union: ``name`` is the tag and picks the registered
config class (``name``, the shared fields of :class:`MethodConfig`, and the method's own section
under its name). pydantic's static ``Field(discriminator=...)`` needs every member written into
the union when the config class is defined, which is exactly the central list a new method must
not have to edit, so the tag is resolved here at validation time; errors still name the dotted
field (``model.method.agreid.gamma``). Method modules are found by importing every module of
this package the first time an unknown name is asked for, so this module (and
``trainer.config``) import no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Optional, Protocol, TypeVar

from pydantic import Field, create_model

from core.configio import StrictModel

Backbone = Optional[Literal["vit", "resnet"]]


class MethodConfig(StrictModel):
    """The fields every method shares; a method's registered config class adds its section.

    ``requires_backbone`` (class level): ``vit``, ``resnet`` or None (either).
    """

    requires_backbone: ClassVar[Backbone] = None

    name: str = Field("baseline", description="method plugged into the baseline (a registered name, trainer.methods)")
    frozen_backbone_epochs: int = Field(
        0,
        ge=0,
        description="epochs that train only the method's modules on the frozen, trained backbone, after stage 2 "
        "(SAGA's stage 3)",
    )
    stage_lr: Optional[float] = Field(
        None, gt=0, description="learning rate of that stage (SAGA release: 3.5e-4); None: stage2.lr x lr_factor"
    )
    stage_warmup_epochs: int = Field(
        5, ge=0, description="linear warm-up (from 0.1) of that stage; cosine decay to 1 % after it"
    )
    lr_factor: float = Field(
        10.0, gt=0, description="stage-2 learning-rate multiplier of the method's new modules (they start from scratch)"
    )


@dataclass(frozen=True)
class MethodEntry:
    name: str
    method: type  # the Method subclass
    config: type[MethodConfig]  # name tag + shared fields + the section under ``name``
    section: Optional[type[StrictModel]]


_CONFIGS: dict[str, type[MethodConfig]] = {}
_METHODS: dict[str, MethodEntry] = {}


def method_config_class(
    name: str, section: Optional[type[StrictModel]] = None, backbone: Backbone = None
) -> type[MethodConfig]:
    """The config class of method ``name`` (created once): ``name`` fixed to it, its section
    (if any) under the field ``name``, defaulting to the section's defaults."""
    existing = _CONFIGS.get(name)
    if existing is not None:
        if existing.model_fields.get(name, None) is not None and existing.model_fields[name].annotation is not section:
            raise ValueError(f"method {name!r} is already registered with another config section")
        return existing
    if not name.isidentifier() or name in MethodConfig.model_fields:
        raise ValueError(f"method name {name!r} must be an identifier and not one of {list(MethodConfig.model_fields)}")
    fields: dict[str, Any] = {"name": (Literal[name], name)}
    if section is not None:
        fields[name] = (section, Field(default_factory=section, description=f"{name}'s own settings"))
    cls = create_model(
        f"{name.title().replace('_', '')}MethodConfig",
        __base__=MethodConfig,
        __module__=getattr(section, "__module__", __name__),
        **fields,
    )
    cls.requires_backbone = backbone
    _CONFIGS[name] = cls
    return cls


BaselineConfig = method_config_class("baseline")  # the default: importable without torch


class _Named(Protocol):
    """What the decorator writes on a Method subclass (this module imports no torch, so it does
    not name :class:`~trainer.methods.base.Method` itself)."""

    name: ClassVar[str]


_MethodClass = TypeVar("_MethodClass", bound=type[_Named])


def register_method(
    name: str, section: Optional[type[StrictModel]] = None, backbone: Backbone = None
) -> Callable[[_MethodClass], _MethodClass]:
    """Class decorator: make the Method subclass available as ``model.method.name = name``."""

    def decorate(method_cls: _MethodClass) -> _MethodClass:
        config = method_config_class(name, section, backbone)
        if name in _METHODS and _METHODS[name].method.__qualname__ != method_cls.__qualname__:
            known = _METHODS[name].method
            raise ValueError(f"method {name!r} is already registered by {known.__module__}.{known.__qualname__}")
        method_cls.name = name
        _METHODS[name] = MethodEntry(name, method_cls, config, section)
        return method_cls

    return decorate


def _discover() -> None:
    """Import every module of this package, so their ``register_method`` calls run."""
    package = importlib.import_module(__name__.rsplit(".", 1)[0])
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def method_entry(name: str) -> MethodEntry:
    if name not in _METHODS:
        _discover()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(method_names())}")
    return _METHODS[name]


def method_names() -> list[str]:
    _discover()
    return sorted(_METHODS)


def parse_method_config(value: Any) -> Any:
    """A recipe's ``model.method`` mapping -> the config object of the method it names."""
    if isinstance(value, MethodConfig) or not isinstance(value, dict):
        return value  # already parsed, or a type error pydantic reports
    name = value.get("name", "baseline")
    if not isinstance(name, str):
        return value
    if any(k != name and k not in MethodConfig.model_fields and k not in _CONFIGS for k in value):
        _discover()  # a section of a method not imported yet: know every name before judging it
    config = _CONFIGS.get(name) or method_entry(name).config
    others = sorted(k for k in value if k != name and k in _CONFIGS)
    if others:
        raise ValueError(
            f"model.method.name is {name!r} but the recipe also sets the section of {', '.join(others)}; "
            f"remove it or set model.method.name={others[0]}"
        )
    return config.model_validate(value)
