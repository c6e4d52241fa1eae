"""Progress display for long runs (episodes, rollouts): one bar that opens only once a run has started."""

from __future__ import annotations

from typing import Any


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, dynamic_ncols=True)


class LazyBar:
    """An episode progress bar that appears only when the run has started (``open``), so an input
    error before that is the only line printed."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.desc, self.enabled, self.bar = total, desc, enabled, None

    def open(self) -> None:
        self.bar = _progress_bar(self.total, self.desc, self.enabled)

    def update(self, **postfix: Any) -> None:
        if self.bar is None:
            self.open()
        self.bar.update(1)
        self.bar.set_postfix(**postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
