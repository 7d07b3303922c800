"""A validated config as frozen plain objects: what :mod:`reconciler.configcache` keeps, loaded without pydantic.

pydantic is the config's only validator (:mod:`reconciler.config`); a process whose config was
validated before (the cache's key: same bytes, same code) need not import it. :func:`view_of` turns a
validated model into a view: an object of a class made for that model's class, holding the same
fields (same names, same values, nested models as views) and inheriting the model's own mixin
(:mod:`reconciler.configbase`, :mod:`reconciler.notify.settingsbase`, each driver's ``settingsbase``),
so every method and property the engine uses is the very code the model runs. A view is immutable,
hashable, and equal to another view, or to a model, of the same model class with equal fields.

What a view does not have itself (``model_dump``, ``model_copy``, ``model_fields_set``, ``resolved``...)
is the real model's: built from the view's fields on first use (``model_construct``: what was validated
is not validated again) and asked. Slower, never different.

:func:`view_of` refuses (ValueError) a model it cannot mirror exactly: one with extra or private
attributes, or whose class overrides a mixin's method outside a mixin (the view would run the
mixin's). The cache then keeps nothing and the next process validates again.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["View", "view_of", "model_of", "model_ref"]


class View:
    """The base of every view class (see :func:`_view_class`): fields in ``__dict__``, nothing settable."""

    __slots__ = ("__dict__", "__weakref__", "_v_model", "_v_set")
    _v_ref: str = ""  # "module:qualname" of the model class this view mirrors
    _v_names: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name!r} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name!r} cannot be deleted")

    def __getattr__(self, name: str) -> Any:
        # Called only for what neither the fields nor the mixin have: the model's (pydantic's API, a method
        # no mixin holds). Dunder and private names are never delegated (copy, pickle and hasattr probe them).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._model(), name)

    def _model(self) -> Any:
        try:
            return self._v_model
        except AttributeError:
            model = _construct(self)
            object.__setattr__(self, "_v_model", model)
            return model

    def __eq__(self, other: object) -> bool:
        if isinstance(other, View):
            return type(other) is type(self) and other.__dict__ == self.__dict__
        if model_ref(type(other)) == self._v_ref and hasattr(type(other), "__pydantic_fields__"):
            return all(self.__dict__[n] == getattr(other, n, _MISSING) for n in self._v_names) and not (
                getattr(other, "__pydantic_extra__", None) or getattr(other, "__pydantic_private__", None))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._v_ref, _frozen(tuple(self.__dict__.values()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in self.__dict__.items())})"

    def __str__(self) -> str:  # as pydantic's: "name='a' driver='directory' ..."
        return " ".join(f"{n}={v!r}" for n, v in self.__dict__.items())

    def __iter__(self) -> Any:  # as pydantic's: (name, value) pairs, so dict(view) is dict(model)
        yield from self.__dict__.items()

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (_mixin(type(self)), self._v_ref, self._v_names, tuple(self.__dict__.values()),
                          _fields_set(self))

    def __copy__(self) -> "View":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "View":
        return self


_MISSING = object()
_CLASSES: dict[tuple[type, str], type[View]] = {}


def _mixin(cls: type) -> type:
    return object if cls.__bases__[0] is View else cls.__bases__[0]


def _fields_set(view: View) -> frozenset[str]:
    """The names the model's ``model_fields_set`` held (the fields given in the file, not defaulted)."""
    try:
        return view._v_set
    except AttributeError:
        return frozenset(view._v_names)


def _view_class(mixin: type, ref: str, names: tuple[str, ...]) -> type[View]:
    """One class per model class: its mixin's methods on :class:`View`."""
    cls = _CLASSES.get((mixin, ref))
    if cls is None or cls._v_names != names:
        name = ref.rpartition(":")[2].rpartition(".")[2]
        bases = (View,) if mixin is object else (mixin, View)
        cls = type(name, bases, {"__slots__": (), "_v_ref": ref, "_v_names": names, "__module__": __name__,
                                 "__qualname__": name})
        _CLASSES[(mixin, ref)] = cls
    return cls


def _rebuild(mixin: type, ref: str, names: tuple[str, ...], values: tuple[Any, ...],
             fields_set: frozenset[str]) -> View:
    """A view from its parts (what unpickling one calls)."""
    if len(names) != len(values):
        raise ValueError("a view's names and values differ in number")
    view = object.__new__(_view_class(mixin, ref, names))
    view.__dict__.update(zip(names, values))
    object.__setattr__(view, "_v_set", frozenset(fields_set))
    return view


def model_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _frozen(value: Any) -> Any:
    """``value`` made hashable the same way each time (a dict field's items, sorted by key)."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((k, _frozen(v)) for k, v in value.items()), key=lambda kv: repr(kv[0]))))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    if isinstance(value, set):
        return ("set", frozenset(_frozen(v) for v in value))
    return value


# -- the validated side (pydantic imported): model -> view, view -> model ----------------------------------

def view_of(value: Any) -> Any:
    """The view of a validated model (recursively: its fields' models, tuples, lists and dicts of them)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        cls = type(value)
        mixin = _checked_mixin(cls)
        if value.__pydantic_extra__ or value.__pydantic_private__:
            raise ValueError(f"{cls.__name__} holds extra or private attributes: not mirrored")
        names = tuple(cls.model_fields)
        return _rebuild(mixin, model_ref(cls), names, tuple(view_of(getattr(value, n)) for n in names),
                        frozenset(value.model_fields_set))
    if isinstance(value, tuple):
        return tuple(view_of(v) for v in value)
    if isinstance(value, list):
        return [view_of(v) for v in value]
    if isinstance(value, dict):
        return {k: view_of(v) for k, v in value.items()}
    return value


def _checked_mixin(cls: type) -> type:
    """The mixin a model's view inherits: the first class of its MRO that is no pydantic model. Refused
    when the view would not behave as the model: a mixin of the model's MRO missing from the view's, a
    field named as a mixin's attribute, or a model class defining (outside a mixin) a name a mixin has."""
    from pydantic import BaseModel

    mro = cls.__mro__
    mixins = [b for b in mro if not issubclass(b, BaseModel) and b is not object]
    if not mixins:
        return object
    if [b for b in mixins[0].__mro__ if b is not object] != mixins:
        raise ValueError(f"{cls.__name__}: its mixins are not one line of inheritance")
    fields = set(cls.model_fields)
    for name in {n for m in mixins for n in vars(m) if not n.startswith("__")}:
        owner = next(b for b in mro if name in vars(b))
        if name in fields or owner not in mixins:
            raise ValueError(f"{cls.__name__}.{name} is defined outside its mixins: its view would differ")
    return mixins[0]


def model_of(value: Any) -> Any:
    """The pydantic models a view mirrors (recursively), built without validating again."""
    if isinstance(value, View):
        return value._model()
    if isinstance(value, tuple):
        return tuple(model_of(v) for v in value)
    if isinstance(value, list):
        return [model_of(v) for v in value]
    if isinstance(value, dict):
        return {k: model_of(v) for k, v in value.items()}
    return value


def _construct(view: View) -> Any:
    import importlib

    module, _, qualname = view._v_ref.partition(":")
    cls: Any = importlib.import_module(module) if module not in sys.modules else sys.modules[module]
    for part in qualname.split("."):
        cls = getattr(cls, part)
    values = {n: model_of(view.__dict__[n]) for n in view._v_names}
    model = cls.model_construct(_fields_set=set(_fields_set(view)), **values)
    if set(model.__dict__) != set(view._v_names):
        raise RuntimeError(f"{view._v_ref} changed its fields since this view was made")
    return model
