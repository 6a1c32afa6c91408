"""Times in seconds written as clocks: every format the outputs use, in one place.

    clock_millis(3661.5, ",")  01:01:01,500   srt (","), vtt (".")
    clock_centis(75.2)         01:15.20       timed lines, dictation; H:MM:SS.cc from an hour on
    clock_tenths(75.2)         01:15.2        notebook tables; pad_minutes=False: 1:15.2 (word labels)
    clock_seconds(3725)        1:02:05        a folder run's audio and wall time

A time is never negative here: a negative one is written as 0. Minutes keep counting past
59 where a format has no hours.
"""

from __future__ import annotations


def clock_millis(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (SRT uses ',' as the separator)."""
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def clock_centis(seconds: float) -> str:
    """MM:SS.cc, or H:MM:SS.cc from an hour on."""
    cs = max(0, int(round(seconds * 100)))
    hours, cs = divmod(cs, 360_000)
    minutes, cs = divmod(cs, 6000)
    clock = f"{minutes:02d}:{cs // 100:02d}.{cs % 100:02d}"
    return f"{hours}:{clock}" if hours else clock


def clock_tenths(seconds: float, pad_minutes: bool = True) -> str:
    """mm:ss.s (minutes keep counting past 59); m:ss.s without `pad_minutes`."""
    minutes, tenths = divmod(int(round(max(seconds, 0.0) * 10)), 600)
    return f"{minutes:02d}:{tenths / 10:04.1f}" if pad_minutes else f"{minutes}:{tenths / 10:04.1f}"


def clock_seconds(seconds: float) -> str:
    """H:MM:SS, rounded to the second."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
