"""Facts an ALFWorld observation states, for scoring world-model predictions beyond exact match.

``parse_facts(text)`` -> a frozenset of (kind, value) pairs:

* ``("location", "desk 1")`` — "You arrive at desk 1."
* ``("seen", "alarmclock 3")`` — every object listed after "you see" (none for "you see nothing")
* ``("picked", "apple 2")`` / ``("placed", "apple 2")`` — inventory changes ("You pick up the ...",
  "You move/put the ... to/in/on ...")
* ``("open", "drawer 1")`` / ``("closed", "drawer 1")`` — "The drawer 1 is open/closed", "You open/close ..."
* ``("carrying", "mug 1")`` — the inventory listing; ``("nothing", "")`` for "Nothing happens."

Two observations match on facts when their fact sets are equal, even if worded differently.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpr.core import State

ARRIVE = re.compile(r"you arrive at (?:the )?([a-z]+ \d+)")
_SEEN = re.compile(r"you see (.+?)(?:\.|$)")
ITEM = re.compile(r"(?:an? )?([a-z]+ \d+)")
PICK = re.compile(r"you pick up the ([a-z]+ \d+)")
_PLACE = re.compile(r"you (?:move|put) the ([a-z]+ \d+) (?:to|in|on|in/on)")
_STATE = re.compile(r"the ([a-z]+ \d+) is (open|closed)")
_OPEN = re.compile(r"you (open|close) the ([a-z]+ \d+)")
_CARRY = re.compile(r"you are carrying: (.+?)(?:\.|$)")


def items(listing: str) -> list[str]:
    return [m.group(1) for m in ITEM.finditer(listing)] if "nothing" not in listing.split(",")[0] else []


def parse_facts(text: str) -> frozenset[tuple[str, str]]:
    t = " ".join(text.lower().split())
    facts: set[tuple[str, str]] = set()
    if t.startswith("nothing happens"):
        facts.add(("nothing", ""))
    facts.update(("location", m.group(1)) for m in ARRIVE.finditer(t))
    for m in _SEEN.finditer(t):
        facts.update(("seen", x) for x in items(m.group(1)))
    facts.update(("picked", m.group(1)) for m in PICK.finditer(t))
    facts.update(("placed", m.group(1)) for m in _PLACE.finditer(t))
    facts.update((s, r) for r, s in _STATE.findall(t))
    facts.update(("open" if verb == "open" else "closed", r) for verb, r in _OPEN.findall(t))
    for m in _CARRY.finditer(t):
        facts.update(("carrying", x) for x in items(m.group(1)))
    return frozenset(facts)


def facts_match(predicted: str, actual: str) -> bool:
    return parse_facts(predicted) == parse_facts(actual)


def facts_f1(predicted: str, actual: str) -> float:
    """F1 of the predicted observation's facts against the real one's (1.0 when both state none)."""
    p, a = parse_facts(predicted), parse_facts(actual)
    if not p and not a:
        return 1.0
    hits = len(p & a)
    return 2 * hits / (len(p) + len(a))


OBSERVATION_KINDS = ("determined", "unseen")


def observation_kind(state: "State", action: str) -> str:
    """Whether the history determines what the game prints after ``action`` in ``state``:

    * "unseen": going to, or opening, a receptacle for the first time in the episode — the text
      lists what is there, which no model can know from the transcript;
    * "determined": everything else — feedback on an action ("You pick up ...", "Nothing
      happens.", heat / cool / clean / use / put), and revisits and re-openings, whose contents
      the transcript already showed (changed only by the agent's own actions since)."""
    verb = action.split(" ", 1)[0]
    if verb not in ("go", "open"):
        return "determined"
    return "determined" if any(t.action == action for t in state.turns) else "unseen"
