"""Version checks the adapters run on import: each names the range it was tested with."""

from __future__ import annotations


def version_tuple(text: str) -> tuple[int, ...]:
    """'3.2.3' -> (3, 2, 3); stops at the first part that is not a number."""
    numbers = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def check_version(project: str, installed: str, low: tuple[int, ...], high: tuple[int, ...],
                  supported: str) -> None:
    """Raise ImportError naming the supported range when installed is outside [low, high)."""
    if not low <= version_tuple(installed) < high:
        raise ImportError(f"the transport adapter supports {project} {supported}; "
                          f"{project} {installed} is installed")
