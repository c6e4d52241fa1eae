"""The commands ALFWorld would accept in a *simulated* state, derived from its text.

A learned world model writes only the next observation; planners also need the next state's
admissible commands so the policy can rank candidates there. ``next_admissible(parent, action,
observation)`` rebuilds them the way the game does, from what the history says:

* location-free commands carry over from the parent: ``go to R`` for every receptacle the parent
  could go to (and the one just left), ``look``, ``inventory``, ``help``;
* at the current location L (the last "You arrive at L"): ``examine L``; ``open``/``close L`` for
  openable receptacles (by the last open/closed statement); when L is open or not openable,
  ``take O from L`` for the objects last seen there and ``move H to L`` for the held object H;
  ``heat``/``cool``/``clean H with L`` at microwaves/fridges/sinkbasins; ``use`` a lamp seen at L;
* ``examine H`` for the held object.

It is an approximation (the real game also lists a few commands for places out of reach);
``tests/test_planners.py`` measures how often the expert's next real action is in the list.
"""

from __future__ import annotations

import re

from mpr.worldmodel.facts import ARRIVE, PICK, items

from mpr.core import State

_ON_IN = re.compile(r"(?:on|in) the ([a-z]+ \d+), you see (.+?)(?:\.|$)")
_IN_IT = re.compile(r"(?:you open the|the) ([a-z]+ \d+) is open\. in it, you see (.+?)(?:\.|$)")
_OPENED = re.compile(r"you open the ([a-z]+ \d+)")
_CLOSED = re.compile(r"(?:you close the|the) ([a-z]+ \d+)(?: is closed)?")
_PLACE = re.compile(r"you (?:move|put) the ([a-z]+ \d+)")
_GO = re.compile(r"^go to (.+)$")

OPENABLE = ("cabinet", "drawer", "fridge", "microwave", "safe", "box")
APPLIANCE = {"microwave": "heat", "fridge": "cool", "sinkbasin": "clean"}
LAMPS = ("desklamp", "floorlamp")
ALWAYS = ("help", "inventory", "look")


def _kind(name: str) -> str:
    return name.rsplit(" ", 1)[0]


class _Facts:
    """Location, held object, open/closed receptacles and contents seen, replayed from text."""

    def __init__(self) -> None:
        self.location: str | None = None
        self.held: str | None = None
        self.open: dict[str, bool] = {}
        self.contents: dict[str, list[str]] = {}

    def update(self, action: str, observation: str) -> None:
        t = " ".join(observation.lower().split())
        if t.startswith("nothing happens"):
            return
        arrive = ARRIVE.search(t)
        if arrive:
            self.location = arrive.group(1)
        for m in _OPENED.finditer(t):
            self.open[m.group(1)] = True
        if " is closed" in t or t.startswith("you close"):
            for m in _CLOSED.finditer(t):
                self.open[m.group(1)] = False
        for m in list(_ON_IN.finditer(t)) + list(_IN_IT.finditer(t)):
            self.contents[m.group(1)] = items(m.group(2))
            if _kind(m.group(1)) in OPENABLE and self.location == m.group(1):
                self.open[m.group(1)] = True
        pick = PICK.search(t)
        if pick:
            self.held = pick.group(1)
            for listed in self.contents.values():
                if self.held in listed:
                    listed.remove(self.held)
        place = _PLACE.search(t)
        if place and self.location:
            self.contents.setdefault(self.location, []).append(place.group(1))
            self.held = None


def facts_of(state: State) -> _Facts:
    facts = _Facts()
    for turn in state.turns:
        facts.update(turn.action, turn.observation)
    return facts


def next_admissible(parent: State, action: str, observation: str) -> tuple[str, ...]:
    """The commands the game would accept after ``action`` led to ``observation`` in ``parent``
    (sorted, like the game's list). ``parent.admissible`` supplies the receptacles one can go to."""
    child = parent.after(action, observation)
    facts = facts_of(child)
    places = {m.group(1) for a in parent.admissible for m in [_GO.match(a)] if m}
    before = facts_of(parent).location
    if before:
        places.add(before)
    if not places:  # a root without admissible commands: take the receptacles from the room text
        places = set(items(parent.initial.lower().split("you see", 1)[-1]))
    loc = facts.location
    out = set(ALWAYS) | {f"go to {p}" for p in places if p != loc}
    if facts.held:
        out.add(f"examine {facts.held}")
    if loc:
        out.add(f"examine {loc}")
        openable = _kind(loc) in OPENABLE
        is_open = facts.open.get(loc, False)
        if openable:
            out.add(f"close {loc}" if is_open else f"open {loc}")
        if is_open or not openable:
            contents = facts.contents.get(loc, [])
            out.update(f"take {o} from {loc}" for o in contents if o != facts.held)
            if facts.held:
                out.add(f"move {facts.held} to {loc}")
            out.update(f"use {o}" for o in contents if _kind(o) in LAMPS)
        verb = APPLIANCE.get(_kind(loc))
        if verb and facts.held:
            out.add(f"{verb} {facts.held} with {loc}")
    return tuple(sorted(out))
