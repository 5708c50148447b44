"""Where an item goes in a call's history: the one placement rule, in Python.

An item is recorded with ``where`` it goes:

* ``HEAD`` (``"^"``): first;
* the id of an item already placed (the Realtime server's ``previous_item_id``): right after
  it, and after the *side items* that follow it — hold lines, key presses, decisions and
  actions recorded after that item happened before this one;
* ``APPEND`` (``""``): at the end, as a side item;
* an id not placed (yet): at the end, not a side item;
* an item already placed stays where it is (a write replayed after a Redis outage, a
  repeated log line): only its body changes, which is the caller's business.

Its twin is the Lua script ``_ADD_SCRIPT`` in :mod:`callrecord.history`, which applies the
same rule inside Redis (one round trip, atomic). Change both together:
``tests/callrecord/test_placement.py`` checks on a real Redis that random sequences of
additions give the same order from both. Used by the buffered history's local view
(:func:`callrecord.history_buffer.local_view`) and by the trace rebuilt from a log
(``responder/trace/from_log.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

APPEND: Final = ""
HEAD: Final = "^"


class ConversationOrder:
    """The item ids of one call in conversation order, built by :meth:`place`."""

    def __init__(self, ids: Iterable[str] = (), side: Iterable[str] = ()) -> None:
        self.ids: list[str] = list(ids)
        self.side: set[str] = set(side)  # ids placed with APPEND
        self._placed: set[str] = set(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._placed

    def place(self, item_id: str, where: str) -> bool:
        """Place ``item_id`` by ``where`` (see the module); False when it was placed already."""
        if item_id in self._placed:
            return False
        if where == HEAD:
            self.ids.insert(0, item_id)
        elif where and where in self._placed:
            pos = self.ids.index(where)
            while pos + 1 < len(self.ids) and self.ids[pos + 1] in self.side:
                pos += 1
            self.ids.insert(pos + 1, item_id)
        else:
            if where == APPEND:
                self.side.add(item_id)
            self.ids.append(item_id)
        self._placed.add(item_id)
        return True
