"""The words of the synthetic action world: objects (shape x colour), actions, antonyms, synonyms.

Every benchmark of the world is built from these tables, so the properties that make the probes
real are stated once, here:

- Each directional action has an **antonym** whose clip is the time-reversal of its own clip
  (move left <-> move right, grow <-> shrink, appear <-> disappear, ...): ActionBench's Action
  Antonym probe and its Video Reversal probe test exactly that pair.
- ``shake`` and ``bounce`` have no antonym: reversed in time they still look like themselves, so
  they are kept out of AA and VR and serve as plain distractor classes elsewhere.
- Each action has a **root label** (run 1 of the Synonym Robustness Test) and nine synonyms (runs
  2-10). No label is shared by two actions, and no synonym ever appears in a caption of another
  task, so a synonym of an unseen class is new text to any model trained on the captions.
- Captions are imperative, instructional-video style ("move the red square left"); a procedure
  joins its steps with ", then ". Hard negatives only change actions or their order, never the
  objects (see `captions`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Colours are chosen far from the light background in luma, so each object stays visible after
# yuv420p encoding of a 32-pixel frame.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (35, 155, 60),
    "blue": (40, 75, 215),
    "yellow": (225, 185, 20),
    "purple": (135, 50, 175),
    "orange": (235, 120, 20),
}

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "diamond", "cross")


@dataclass(frozen=True, order=True)
class ObjectKind:
    """A drawable object: one colour and one shape, named "red square"."""

    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def slug(self) -> str:
        """File-name form of the name (a Dynamics pool file is ``<slug>.json``)."""
        return f"{self.colour}_{self.shape}"


OBJECTS: tuple[ObjectKind, ...] = tuple(ObjectKind(c, s) for c in COLOURS for s in SHAPES)


@dataclass(frozen=True)
class Action:
    """One action class: its root label, caption template, antonym and synonym runs."""

    name: str            # root label, e.g. "move left" (run 1 of the SRT)
    template: str        # caption with an {obj} slot, e.g. "move the {obj} left"
    antonym: str | None  # the action whose clip is this clip reversed in time; None if reversal is itself
    synonyms: tuple[str, ...]  # nine labels, SRT runs 2-10
    family: str          # look-alike group: classes a viewer confuses without the direction of time

    def caption(self, obj: str) -> str:
        return self.template.format(obj=obj)

    @property
    def runs(self) -> tuple[str, ...]:
        """The ten SRT labels: the root, then the synonyms."""
        return (self.name, *self.synonyms)


ACTIONS: tuple[Action, ...] = (
    Action("move left", "move the {obj} left", "move right",
           ("slide left", "shift left", "push left", "drift left", "glide left", "nudge left",
            "travel left", "sweep left", "carry left"), "horizontal"),
    Action("move right", "move the {obj} right", "move left",
           ("slide right", "shift right", "push right", "drift right", "glide right", "nudge right",
            "travel right", "sweep right", "carry right"), "horizontal"),
    Action("move up", "move the {obj} up", "move down",
           ("raise", "lift", "rise", "climb", "ascend", "float up", "slide up", "hoist", "elevate"), "vertical"),
    Action("move down", "move the {obj} down", "move up",
           ("lower", "sink", "descend", "drop down", "slide down", "settle down", "dip", "let down", "bring down"),
           "vertical"),
    Action("rotate clockwise", "rotate the {obj} clockwise", "rotate anticlockwise",
           ("turn clockwise", "spin clockwise", "twist clockwise", "revolve clockwise", "swivel clockwise",
            "pivot clockwise", "wheel clockwise", "roll clockwise", "crank clockwise"), "turning"),
    Action("rotate anticlockwise", "rotate the {obj} anticlockwise", "rotate clockwise",
           ("turn anticlockwise", "spin counterclockwise", "twist anticlockwise", "revolve counterclockwise",
            "swivel anticlockwise", "pivot counterclockwise", "wheel anticlockwise", "roll counterclockwise",
            "unscrew"), "turning"),
    Action("grow", "grow the {obj}", "shrink",
           ("enlarge", "expand", "swell", "inflate", "scale up", "magnify", "widen", "blow up", "puff up"), "size"),
    Action("shrink", "shrink the {obj}", "grow",
           ("contract", "reduce", "scale down", "diminish", "compress", "deflate", "dwindle", "condense",
            "make smaller"), "size"),
    Action("appear", "make the {obj} appear", "disappear",
           ("fade in", "emerge", "materialize", "show up", "come into view", "pop in", "surface", "reveal",
            "arrive"), "visibility"),
    Action("disappear", "make the {obj} disappear", "appear",
           ("fade out", "vanish", "dissolve", "evaporate", "fade away", "dematerialize", "hide", "go out of view",
            "melt away"), "visibility"),
    Action("shake", "shake the {obj}", None,
           ("jiggle", "wobble", "vibrate", "rattle", "quiver", "tremble", "jitter", "wiggle", "shudder"),
           "horizontal"),
    Action("bounce", "bounce the {obj}", None,
           ("hop", "jump", "spring", "leap", "bob", "rebound", "skip", "bound", "vault"), "vertical"),
)

ACTION_BY_NAME: dict[str, Action] = {action.name: action for action in ACTIONS}
ACTION_NAMES: tuple[str, ...] = tuple(action.name for action in ACTIONS)
# Actions whose time-reversal is their antonym: the only ones in ActionBench AA and VR.
REVERSIBLE_ACTIONS: tuple[str, ...] = tuple(a.name for a in ACTIONS if a.antonym is not None)

# Start-pose to end-pose descriptions for TAL (in the spirit of ActionVLM's THUMOS14 set).
POSE_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "move left": ("The shape starts at rest on the right of where it will stop",
                  "ends at rest about a third of the frame further left, unchanged in size and orientation"),
    "move right": ("The shape starts at rest on the left of where it will stop",
                   "ends at rest about a third of the frame further right, unchanged in size and orientation"),
    "move up": ("The shape starts at rest low in the frame",
                "ends at rest about a third of the frame higher, unchanged in size and orientation"),
    "move down": ("The shape starts at rest high in the frame",
                  "ends at rest about a third of the frame lower, unchanged in size and orientation"),
    "rotate clockwise": ("The shape starts at rest with its dark mark at some angle",
                         "ends in place with the mark turned a quarter turn clockwise"),
    "rotate anticlockwise": ("The shape starts at rest with its dark mark at some angle",
                             "ends in place with the mark turned a quarter turn anticlockwise"),
    "grow": ("The shape starts small and at rest", "ends in the same place half as large again"),
    "shrink": ("The shape starts large and at rest", "ends in the same place a third smaller"),
    "appear": ("The frame starts without the shape, only the background where it will be",
               "ends with the shape fully opaque at that place"),
    "disappear": ("The shape starts fully visible and at rest",
                  "ends faded out completely, leaving only the background"),
    "shake": ("The shape starts at rest", "jitters quickly left and right a few times and ends where it started"),
    "bounce": ("The shape starts at rest",
               "rises by about a quarter of the frame, falls back and ends where it started"),
}

# How hard a class is to tell from its look-alikes by appearance alone (ActionVLM's easy/medium/hard
# grouping): a quarter turn of a small shape is subtle, translations are clear but pair with their
# antonym, size and visibility changes are the most visible.
AMBIGUITY: dict[str, str] = {
    "move left": "medium", "move right": "medium", "move up": "medium", "move down": "medium",
    "rotate clockwise": "hard", "rotate anticlockwise": "hard",
    "grow": "easy", "shrink": "easy", "appear": "easy", "disappear": "easy",
    "shake": "medium", "bounce": "medium",
}


def action(name: str) -> Action:
    """The action called ``name``; a KeyError names the known actions."""
    try:
        return ACTION_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r} (known: {', '.join(ACTION_NAMES)})") from None
