"""How a diarization run is asked for, as one frozen value checked once (like TranscribeOptions)."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, fields, replace

from ..errors import OptionError

# The segmentation network's window: it was trained on 10 s of audio at a time.
WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class DiarizeOptions:
    """num_speakers:  exactly this many speakers (at least 1); None finds the number.
    min_speakers, max_speakers: bounds on the number found (each at least 1; min <= max).
    speakers:      known speakers: {name: reference clip (path, or 16 kHz mono array)}; the
                   speaker whose voice matches a clip is called by its name.
    references:    the clips' embeddings ({name: vector}), filled in by the run.
    """

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    speakers: dict | None = None
    references: dict | None = None

    def __post_init__(self):
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                raise OptionError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.num_speakers is not None and (self.min_speakers is not None or self.max_speakers is not None):
            raise OptionError("give either num_speakers or min_speakers/max_speakers, not both")
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise OptionError(f"min_speakers ({self.min_speakers}) is above max_speakers ({self.max_speakers})")
        if self.speakers is not None:
            if not isinstance(self.speakers, dict):
                raise OptionError("speakers must be a dict of name -> reference clip")
            for name, clip in self.speakers.items():
                if not (isinstance(name, str) and name.strip()):
                    raise OptionError(f"a known speaker needs a name, got {name!r}")
                if isinstance(clip, (str, os.PathLike)) and not os.path.isfile(clip):
                    raise OptionError(f"reference clip for {name}: {os.fspath(clip)}: no such file")

    @classmethod
    def build(cls, options: "DiarizeOptions | None" = None, **changes) -> "DiarizeOptions":
        unknown = sorted(set(changes) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown diarization option(s): {', '.join(unknown)}")
        if options is None:
            return cls(**changes)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a DiarizeOptions, got {type(options).__name__}")
        return replace(options, **changes) if changes else options

    def with_references(self, references: dict) -> "DiarizeOptions":
        return replace(self, references=references)

    def record(self) -> dict:
        """Plain JSON values (a folder run's manifest): the known speakers by name only."""
        return {"num_speakers": self.num_speakers, "min_speakers": self.min_speakers,
                "max_speakers": self.max_speakers, "speakers": sorted(self.speakers) if self.speakers else None}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
