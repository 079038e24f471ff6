"""WatchedState: ``optimizer.state`` as a dict that notices when someone edits it.

torch.optim reads its ``state[p]`` entries at every step, so code that edits them
(``state.clear()``, ``del state[p]``, ``state[p] = {...}``, ``state[p]["exp_avg"] = t``,
as ZeroRedundancyOptimizer's ``load_state_dict`` does) changes what the next step does.
minioptim's state lives in flat buffers, and ``state[p]`` only shows views of them; an
edit of the dicts would be lost. So the dicts record that they were edited, and the next
step (or ``state_dict()``) copies what they now hold back into the buffers
(``FusedOptimizer._sync_state_edits``). Checking costs one attribute read per step.

Edits of the tensors themselves (``state[p]["exp_avg"].zero_()``) need nothing: the
tensors are views of the buffers.
"""

from __future__ import annotations

from typing import Any


class WatchedEntry(dict):
    """One parameter's ``optimizer.state[p]``: tells its :class:`WatchedState` of edits."""

    owner: WatchedState | None = None  # a class default: unpickling sets items first

    def __init__(self, owner: WatchedState | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def _edited(self) -> None:
        if self.owner is not None:
            self.owner.edited = True

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._edited()

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._edited()

    def clear(self) -> None:
        super().clear()
        self._edited()

    def pop(self, *args: Any) -> Any:
        self._edited()
        return super().pop(*args)

    def popitem(self) -> tuple[Any, Any]:
        self._edited()
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self._edited()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._edited()

    def __ior__(self, other: Any) -> WatchedEntry:
        self.update(other)
        return self


class WatchedState(dict):
    """``optimizer.state``: parameter -> :class:`WatchedEntry`, created on first access.

    Like torch.optim's ``defaultdict(dict)``: reading ``state[p]`` for a parameter
    without state gives (and keeps) an empty entry. ``edited`` is True once the dict or
    one of its entries was changed; the optimizer resets it after taking the edits in.
    """

    edited: bool = False

    def __init__(self, entries: Any = ()) -> None:
        super().__init__()
        for key, value in dict(entries).items():
            super().__setitem__(key, self._entry(value))
        self.edited = False

    def _entry(self, value: Any) -> Any:
        if isinstance(value, WatchedEntry):
            value.owner = self
            return value
        return WatchedEntry(self, value) if isinstance(value, dict) else value

    def __missing__(self, key: Any) -> WatchedEntry:
        entry = self[key] = WatchedEntry(self)
        return entry

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, self._entry(value))
        self.edited = True

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.edited = True

    def clear(self) -> None:
        super().clear()
        self.edited = True

    def pop(self, *args: Any) -> Any:
        self.edited = True
        return super().pop(*args)

    def popitem(self) -> tuple[Any, Any]:
        self.edited = True
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> WatchedState:
        self.update(other)
        return self
