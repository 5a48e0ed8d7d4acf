"""Which invoke releases the adapter supports, checked when it is imported."""

from __future__ import annotations

SUPPORTED_INVOKE = ((2, 0), (4, 0))  # 2.x (what Fabric 3 requires) and 3.x


def version_tuple(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def check_invoke_version() -> None:
    import invoke

    low, high = SUPPORTED_INVOKE
    if not low <= version_tuple(invoke.__version__) < high:
        raise ImportError(f"the transport adapter supports invoke {low[0]}.x to {high[0] - 1}.x; "
                          f"invoke {invoke.__version__} is installed")
