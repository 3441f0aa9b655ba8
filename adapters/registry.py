"""The model registry: one name per model, resolved to a factory (the timm ``register_model`` pattern).

Why a registry: the CLI, the runner and the leaderboard name models with a string
(``--model random --model-args seed=3``), so a model must be creatable from a name and a few
keyword arguments, and the runner must be able to tell two configurations apart for its cache
(`model_fingerprint`). Three kinds of names resolve:

Registered names
    Factories decorated with `register_model`, each with its `ModelCard` (capabilities, published
    weight tags, preprocessing, licences). The built-in adapter modules are found by walking this
    package (`builtin_modules`: no hand-kept list) and imported lazily on the first lookup, so
    ``import instract_eval`` and ``--help`` do not pay for torch and the adapters. A module that
    raises while importing is a bug and propagates as a `RuntimeError` naming the module, never
    as a silently missing model.
Entry points
    Third-party packages declare ``[project.entry-points."instract_eval.adapters"]`` with
    ``model-name = "pkg.module:factory"``. They are listed (`available_models`) from the installed
    metadata without importing any plugin code, and loaded only by `create_model`. A plugin that
    fails to import is reported as such (`InputError` with the entry point, its distribution and
    the original exception), never as "unknown model", so a missing CUDA extension or dependency
    is diagnosable from the one line the CLI prints. A registered name wins over an entry point of
    the same name (a plugin cannot hijack ``random``); two plugins claiming one name is an error
    when that name is created.
``package.module:factory``
    A Python path to any factory callable, so users can evaluate their own adapter without
    packaging it. If the module is not importable and the current directory is not on
    ``sys.path`` (the ``instract-eval`` console script does not put it there, unlike
    ``python -m``), the current directory is appended to ``sys.path`` and the import retried once:
    ``instract-eval run --model my_adapter:make`` then works from the adapter's directory, and
    appending (not prepending) cannot shadow an installed module.

Keyword arguments are checked against the factory's signature before it is called, so a typo in
``--model-args`` names the argument and lists the accepted ones instead of surfacing as a
``TypeError`` from inside the adapter (whose own ``TypeError``\\ s are not masked).

Weights: ``create_model(name, pretrained=TAG)`` resolves one of the card's tags to a local file
(`instract_eval.adapters.core.hub`: downloaded into the cache when online, one error line naming
what to fetch and the ``checkpoint=`` that takes it when not) and calls the factory with
``checkpoint=PATH`` plus the tag's arguments; ``create_model(name, checkpoint=PATH)`` uses a file
the user has.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import os
import pkgutil
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from instract_eval.errors import InputError

from .cards import ModelCard

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelEntry",
    "available_models",
    "builtin_modules",
    "card_of",
    "create_model",
    "model_fingerprint",
    "parse_model_args",
    "register_model",
]

# Modules of this package that hold no adapter: the platform itself.
_PLATFORM_MODULES = ("registry", "protocols", "cards")
ENTRY_POINT_GROUP = "instract_eval.adapters"
BUILTIN_SOURCE = "built-in"
_LIST_HINT = "instract-eval list models shows all"
_MODEL_FIELD = "--model"
_ARGS_FIELD = "--model-args"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelEntry:
    """One creatable model as listed by `available_models`.

    ``source`` is ``"built-in"`` for factories registered by a module of this package,
    ``"registered by <module>"`` for ones registered by other code with `register_model`, and
    ``"entry point from <distribution name>"`` for plugins. ``factory`` is None for an entry point
    not loaded yet (listing never imports plugin code); its ``description`` is then the entry
    point's target (``pkg.module:factory``), the only thing known without importing it.
    """

    name: str
    description: str
    source: str
    factory: Callable[..., Any] | None
    card: ModelCard | None = None


# Registered factories by name. Functions read the module global each time (tests swap it).
_REGISTRY: dict[str, ModelEntry] = {}
# Entry-point factories already loaded, keyed by (distribution, name, target).
_LOADED_ENTRY_POINTS: dict[tuple[str, str, str], Callable[..., Any]] = {}
_LOCK = threading.RLock()
_builtins_loaded = False
_builtins_loading = False
_NAME_PATTERN = re.compile(r"[^\s:,=]+")


# ------------------------------------------------------------------------------------------------
# Registering and listing


def register_model(name: str, *, description: str = "", card: ModelCard | None = None) -> Callable[[F], F]:
    """Decorator registering ``factory`` under ``name``; returns the factory unchanged.

    ``card`` says what the model is (built-in models all have one; `list models --details` prints
    it). ``description`` defaults to the card's, else to the first line of the factory's docstring. A name may not contain
    whitespace, ``:``, ``,`` or ``=`` (``:`` marks the ``module:factory`` form; ``,`` and ``=`` would
    be ambiguous on a command line). Registering a name twice raises `ValueError`: two adapters
    answering to one name would make results depend on import order. The built-in modules are
    loaded first, so a clash with a built-in name is reported here, at the clashing registration.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"model name must be a non-empty string without whitespace, ':', ',' or '=', got {name!r}")

    def decorator(factory: F) -> F:
        if not callable(factory):
            raise TypeError(f"register_model({name!r}) must decorate a callable, got {type(factory).__name__}")
        module = getattr(factory, "__module__", None) or ""
        with _LOCK:
            if not module.startswith("instract_eval."):
                # A third party's name must not clash with a built-in one: load those first. A
                # built-in module does not: its import would start loading its siblings in the
                # middle of its own import, and a sibling importing from it would find it half made.
                _ensure_builtins()
            if name in _REGISTRY:
                raise ValueError(f"model {name!r} is already registered (by {_qualified(_REGISTRY[name].factory)})")
            source = BUILTIN_SOURCE if module.startswith("instract_eval.") else f"registered by {module or '?'}"
            if card is not None and not isinstance(card, ModelCard):
                raise TypeError(f"register_model({name!r}): card must be a ModelCard, got {type(card).__name__}")
            text = description or (card.description if card is not None else "") or _first_doc_line(factory)
            _REGISTRY[name] = ModelEntry(name=name, description=text, source=source, factory=factory, card=card)
        return factory

    return decorator


def available_models() -> list[ModelEntry]:
    """Registered models and installed entry points, sorted by name (then source).

    Imports the built-in adapter modules (once) but no plugin code. An entry point whose name is
    registered is left out: the registered factory is the one `create_model` uses.
    """
    _ensure_builtins()
    with _LOCK:
        entries = list(_REGISTRY.values())
    for entry_point, distribution in _entry_points():
        if entry_point.name in _REGISTRY:
            continue
        loaded = _LOADED_ENTRY_POINTS.get((distribution, entry_point.name, entry_point.value))
        entries.append(ModelEntry(name=entry_point.name, description=entry_point.value,
                                  source=f"entry point from {distribution}", factory=loaded))
    return sorted(entries, key=lambda entry: (entry.name, entry.source))


# ------------------------------------------------------------------------------------------------
# Creating


def create_model(name: str, **kwargs: Any) -> Any:
    """The model ``name`` (registered, entry point, or ``package.module:factory``) built with ``kwargs``.

    ``pretrained=TAG`` names one of the card's weight tags: it is fetched (or found in the cache)
    and passed on as ``checkpoint=PATH`` with the tag's own arguments; ``checkpoint=PATH`` is a
    file or directory the user has. A torch model comes back in evaluation mode. Raises
    `InputError` (field ``--model``) for an unknown name
    (with close matches), a plugin or module that fails to import (with the original exception),
    and (field ``--model-args``) for an unknown tag, arguments the factory does not accept or
    required ones that are missing. Exceptions raised by the factory itself propagate unchanged.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model name must be a non-empty string, got {name!r}", field=_MODEL_FIELD)
    name = name.strip()
    factory = _resolve(name)
    if kwargs.get("pretrained") is not None and "pretrained" not in _keyword_parameters(factory):
        from .core.hub import pretrained_arguments

        kwargs = pretrained_arguments(name, card_of(name), dict(kwargs))
    _check_arguments(name, factory, kwargs)
    model = factory(**kwargs)
    if model is None:
        raise InputError(f"model {name}: factory {_qualified(factory)} returned None instead of a model",
                         field=_MODEL_FIELD)
    _evaluation_mode(model)
    return model


def _evaluation_mode(model: Any) -> None:
    """A created torch model is in evaluation mode (dropout off, normalisation statistics frozen).

    The runner calls ``.eval()`` too, but a user who calls ``create_model(...).encode_video(...)``
    directly must get the same numbers as the run, not a dropout sample.
    """
    try:
        import torch
    except ImportError:  # a plugin without torch
        return
    if isinstance(model, torch.nn.Module):
        model.eval()


def _resolve(name: str) -> Callable[..., Any]:
    if ":" in name:
        return _load_target(name, label=f"model {name}")
    _ensure_builtins()
    with _LOCK:
        entry = _REGISTRY.get(name)
    if entry is not None:
        assert entry.factory is not None  # registered entries always carry their factory
        return entry.factory
    candidates = [(entry_point, distribution) for entry_point, distribution in _entry_points()
                  if entry_point.name == name]
    if len(candidates) > 1:
        providers = ", ".join(f"{distribution} ({entry_point.value})" for entry_point, distribution in candidates)
        raise InputError(f"model {name} is provided by several installed distributions: {providers}; uninstall "
                         "one, or name the factory directly as package.module:factory", field=_MODEL_FIELD)
    if candidates:
        return _load_entry_point(*candidates[0])
    known = set(_REGISTRY) | {entry_point.name for entry_point, _ in _entry_points()}
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"unknown model {name!r}{suggestion} ({_LIST_HINT})", field=_MODEL_FIELD)


def card_of(name: str) -> ModelCard | None:
    """The card of the registered model ``name`` (None for entry points and ``module:factory`` names)."""
    _ensure_builtins()
    with _LOCK:
        entry = _REGISTRY.get(name)
    return entry.card if entry is not None else None


def _keyword_parameters(factory: Callable[..., Any]) -> set[str]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                     inspect.Parameter.KEYWORD_ONLY)}


def _load_entry_point(entry_point: importlib.metadata.EntryPoint, distribution: str) -> Callable[..., Any]:
    key = (distribution, entry_point.name, entry_point.value)
    with _LOCK:
        if key in _LOADED_ENTRY_POINTS:
            return _LOADED_ENTRY_POINTS[key]
        label = f"model {entry_point.name} (entry point from {distribution})"
        try:
            factory = entry_point.load()
        except Exception as error:  # any failure of plugin code: report it, never as "not found"
            raise InputError(f"{label} failed to load: {_describe(error)} "
                             f"(entry point {entry_point.name} = {entry_point.value})",
                             field=_MODEL_FIELD) from error
        if not callable(factory):
            raise InputError(f"{label}: {entry_point.value} is a {type(factory).__name__}, not a callable factory",
                             field=_MODEL_FIELD)
        _LOADED_ENTRY_POINTS[key] = factory
        return factory


def _load_target(target: str, *, label: str) -> Callable[..., Any]:
    """``package.module:attr.path`` to the object it names (``attr.path`` may be dotted)."""
    module_name, _, attribute = target.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not module_name or not attribute or ":" in attribute:
        raise InputError(f"{label}: expected package.module:factory, got {target!r}", field=_MODEL_FIELD)
    try:
        module = _import_user_module(module_name)
    except Exception as error:
        raise InputError(f"{label} failed to load: {_describe(error)}", field=_MODEL_FIELD) from error
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InputError(f"{label}: {module_name} has no attribute {attribute!r}", field=_MODEL_FIELD)
        value = getattr(value, part)
    if not callable(value):
        raise InputError(f"{label}: {target} is a {type(value).__name__}, not a callable factory",
                         field=_MODEL_FIELD)
    return value


def _import_user_module(module_name: str) -> Any:
    """Import ``module_name``, retrying once with the current directory appended to ``sys.path``.

    Only when the missing module is the requested one (or its top-level package) is the retry
    made; a module that exists but fails to import one of *its* dependencies raises as is.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        on_path = {os.path.abspath(entry or os.curdir) for entry in sys.path}
        if error.name not in (module_name, top) or cwd in on_path:
            raise
        sys.path.append(cwd)
        importlib.invalidate_caches()
        return importlib.import_module(module_name)


def _check_arguments(name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Raise `InputError` (field ``--model-args``) for unexpected or missing factory arguments."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have no signature: let the call decide
        return
    parameters = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    by_keyword = {p.name for p in parameters.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    accepted = _describe_parameters(signature)
    if not accepts_any:
        for key in kwargs:
            if key not in by_keyword:
                close = difflib.get_close_matches(key, sorted(by_keyword), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise InputError(f"model {name} does not accept argument {key!r}{hint}; {accepted}", field=_ARGS_FIELD)
    for parameter in parameters.values():
        required = parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if required and parameter.name not in kwargs:
            raise InputError(f"model {name} needs argument {parameter.name!r} "
                             f"(--model-args {parameter.name}=...); {accepted}", field=_ARGS_FIELD)
    try:
        signature.bind(**kwargs)
    except TypeError as error:  # positional-only parameters without defaults, and the like
        raise InputError(f"model {name}: {error}; {accepted}", field=_ARGS_FIELD) from error


def _describe_parameters(signature: inspect.Signature) -> str:
    shown = []
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # cannot be given by keyword
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            shown.append(f"**{parameter.name}")
        elif parameter.default is inspect.Parameter.empty:
            shown.append(parameter.name)
        else:
            shown.append(f"{parameter.name}={parameter.default!r}")
    return f"it accepts: {', '.join(shown)}" if shown else "it takes no arguments"


# ------------------------------------------------------------------------------------------------
# --model-args


_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_PATTERN = re.compile(r"[+-]?\d+")
_FLOAT_PATTERN = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.IGNORECASE)


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``key=value,key=value`` (the ``--model-args`` text) to factory keyword arguments.

    Unquoted values become ``int``, ``float`` (including ``inf`` and ``nan``), ``True``/``False``
    (``true``/``false``, any case), ``None`` (``null``/``none``, any case), or else the string
    itself with surrounding spaces removed. A value that starts with a single or double quote is
    a string up to the matching quote, commas and ``=`` included (``prompt='a, b'``; no escapes:
    use the other quote kind to include one), so ``'3'`` stays the string ``"3"``. None or blank
    text gives ``{}``. Raises `InputError` (field ``--model-args``) naming the offending pair for a
    pair without ``=``, a key that is not a Python identifier, an empty value (write ``key=''``),
    an unterminated quote, text after a closing quote, an empty pair, or a duplicate key.
    """
    if text is None or not text.strip():
        return {}
    result: dict[str, Any] = {}
    position, length = 0, len(text)
    while True:
        # key
        equals = text.find("=", position)
        comma = text.find(",", position)
        if equals < 0 or (0 <= comma < equals):
            end = comma if comma >= 0 else length
            pair = text[position:end].strip()
            problem = "empty pair (two commas in a row, or a trailing comma)" if not pair else "expected key=value"
            raise InputError(f"{problem}: {pair!r} in {text!r}", field=_ARGS_FIELD)
        key = text[position:equals].strip()
        value_start = equals + 1
        while value_start < length and text[value_start].isspace():
            value_start += 1
        if value_start < length and text[value_start] in "'\"":
            quote = text[value_start]
            closing = text.find(quote, value_start + 1)
            if closing < 0:
                raise InputError(f"unterminated {quote} quote in {text[position:].strip()!r}", field=_ARGS_FIELD)
            value: Any = text[value_start + 1:closing]
            end = closing + 1
            while end < length and text[end].isspace():
                end += 1
            if end < length and text[end] != ",":
                raise InputError(f"unexpected text after the closing quote in {text[position:].strip()!r} "
                                 "(separate pairs with commas)", field=_ARGS_FIELD)
            pair = text[position:end].strip()
        else:
            end = text.find(",", value_start)
            end = length if end < 0 else end
            pair = text[position:end].strip()
            raw = text[value_start:end].strip()
            if not raw:
                raise InputError(f"empty value in {pair!r} (write {key}='' for an empty string)", field=_ARGS_FIELD)
            value = _scalar(raw)
        if not _KEY_PATTERN.fullmatch(key):
            fixed = key.replace("-", "_")
            hint = f"; did you mean {fixed}?" if _KEY_PATTERN.fullmatch(fixed) else ""
            raise InputError(f"{key!r} in {pair!r} is not a valid argument name (letters, digits and _){hint}",
                             field=_ARGS_FIELD)
        if key in result:
            raise InputError(f"duplicate key {key!r} in {pair!r}", field=_ARGS_FIELD)
        result[key] = value
        if end >= length:
            return result
        position = end + 1  # past the comma
        if not text[position:].strip():
            raise InputError(f"empty pair (a trailing comma) in {text!r}", field=_ARGS_FIELD)


def _scalar(raw: str) -> Any:
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered in ("null", "none"):
        return None
    if _INT_PATTERN.fullmatch(raw):
        return int(raw)
    if _FLOAT_PATTERN.fullmatch(raw):
        return float(raw)
    return raw


# ------------------------------------------------------------------------------------------------
# Fingerprint


def model_fingerprint(name: str, kwargs: Mapping[str, Any], model: Any) -> str:
    """SHA-256 hex digest identifying a model configuration: the key of the runner's disk cache.

    The cache must never hand back outputs of a different model, so everything that can change
    the outputs and is knowable without running the model goes in, as canonical JSON (sorted
    keys, no whitespace, so equal configurations hash equally across runs and processes):

    ``model``
        The name it was created from: two registered names may share a class yet differ.
    ``args``
        The keyword arguments as given (sorted; values JSON cannot hold via ``repr``): a changed
        seed, dimension or weights path is a different model. Arguments left at their defaults
        are not spelled out, so adding ``seed=0`` explicitly costs one cache miss, never a stale
        hit. A value whose ``repr`` holds a memory address makes the key differ per process
        (a miss, not a stale hit); pass plain values.
    ``class``
        ``module.qualname`` of the model's type: the same name resolving to another adapter
        (a plugin replaced, a ``module:factory`` edited to return another class) must not hit.
    ``weights``
        ``model.weights_fingerprint()`` when the model has it, else None: the same path may hold
        retrained weights, so adapters with weights should hash their content (or its header).
    ``code``
        The card's ``code_version`` (registered models): a port whose outputs were fixed bumps it,
        so its outputs are never read from the cache the broken version filled.
    """
    weights_method = getattr(model, "weights_fingerprint", None)
    weights = weights_method() if callable(weights_method) else None
    model_type = type(model)
    document = {
        "model": name,
        "args": {str(key): kwargs[key] for key in sorted(kwargs, key=str)},
        "class": f"{model_type.__module__}.{model_type.__qualname__}",
        "weights": weights,
    }
    card = card_of(name) if ":" not in name else None
    if card is not None:
        document["code"] = card.code_version
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------
# Internals


def builtin_modules() -> tuple[str, ...]:
    """Every adapter module of this package, found by walking it (sorted, so the order is fixed).

    The platform modules (registry, protocols, cards) are left out, and so is any module or
    package whose name starts with an underscore.
    """
    package = importlib.import_module(__package__ or "instract_eval.adapters")
    names = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        parts = info.name.split(".")[2:]
        if any(part.startswith("_") for part in parts) or (len(parts) == 1 and parts[0] in _PLATFORM_MODULES):
            continue
        names.append(info.name)
    return tuple(sorted(names))


def _ensure_builtins() -> None:
    """Import the built-in adapter modules once; they register their models as they import.

    One that raises is reported as a `RuntimeError` naming it, and whatever it registered before
    failing is withdrawn, so the next lookup retries and fails the same way instead of tripping
    over half a registration.
    """
    global _builtins_loaded, _builtins_loading
    if _builtins_loaded:
        return
    with _LOCK:
        if _builtins_loaded or _builtins_loading:  # loading: a built-in module registering itself
            return
        _builtins_loading = True
        try:
            for module_name in builtin_modules():
                if module_name in sys.modules:
                    continue
                snapshot = dict(_REGISTRY)
                try:
                    importlib.import_module(module_name)
                except Exception as error:
                    _REGISTRY.clear()
                    _REGISTRY.update(snapshot)
                    raise RuntimeError(f"built-in adapter module {module_name} failed to import: "
                                       f"{_describe(error)}") from error
            _builtins_loaded = True
        finally:
            _builtins_loading = False


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """Installed entry points of the adapter group with their distribution names (nothing imported).

    Read on every call rather than cached: installing a plugin, or a test adding a path, is seen.
    """
    found = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = getattr(entry_point, "dist", None)
        dist_name = None
        if distribution is not None:
            dist_name = distribution.metadata["Name"] if distribution.metadata else None
        found.append((entry_point, dist_name or "an unknown distribution"))
    return found


def _describe(error: BaseException) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', repr(obj))}"


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
