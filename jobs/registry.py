"""The AI functions by name, loaded lazily so the web app does not import every function's module."""

from importlib import import_module

from jobs.errors import ValidationError

_LAZY: dict[str, str] = {}
_LOADED: dict = {}


def register_lazy_function(name: str, dotted_path: str) -> None:
    """Register 'module.path:ClassName' under `name` without importing it yet."""
    _LAZY[name] = dotted_path


def get_function_class(name: str):
    if name not in _LOADED:
        if name not in _LAZY:
            raise ValidationError(f"Unknown AI function {name!r}.")
        module_path, class_name = _LAZY[name].split(":")
        _LOADED[name] = getattr(import_module(module_path), class_name)
    return _LOADED[name]


def get_function(name: str):
    return get_function_class(name)()


def preload_all() -> None:
    """Import every function (and what it uses) now: a forking worker then hands each work-horse
    warm modules instead of paying the imports (Pillow, requests, cryptography) on every job."""
    for name in _LAZY:
        get_function_class(name)


register_lazy_function(
    "generate_images_from_prompts",
    "jobs.functions.generate_images_from_prompts:GenerateImagesFromPromptsFunction",
)
