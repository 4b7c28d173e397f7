"""The operator commands' one way to find a customer in the registry."""

from __future__ import annotations

from pathlib import Path

from stacks.config import CustomerConfig, load_registry


def registered_customer(registry_dir: str, slug: str, *,
                        error: type[Exception]) -> CustomerConfig:
    """The customer ``slug`` of the registry in ``registry_dir``; otherwise raise ``error``
    with one line naming the registered customers."""
    registry = load_registry(Path(registry_dir))
    if slug not in registry:
        known = ", ".join(sorted(registry)) or "(none)"
        raise error(f"customer {slug!r} is not registered in {registry_dir} "
                    f"(registered: {known})")
    return registry[slug]
