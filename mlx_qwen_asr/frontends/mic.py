"""Choosing the microphone: the input devices PortAudio reports, listed (`--list-devices`)
and picked by index or name (`--mic-device`).

`input_devices` and `resolve_device` are plain functions over the list that
`sounddevice.query_devices()` returns (dicts with name and max_input_channels), so the
choosing is the same with or without real hardware; only `query_input_devices` talks to
PortAudio.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SetupError


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default: bool = False

    def __str__(self) -> str:
        return f"{self.index} {self.name!r}" + (" (default)" if self.default else "")


def input_devices(devices, default_input: int | None = None) -> list[InputDevice]:
    """The devices that can record, with their PortAudio index; `default_input` is marked."""
    found = []
    for position, device in enumerate(devices):
        index = int(device.get("index", position))
        channels = int(device.get("max_input_channels", 0))
        if channels > 0:
            found.append(InputDevice(index, str(device.get("name", "")), channels, index == default_input))
    return found


def device_lines(devices: list[InputDevice]) -> list[str]:
    """--list-devices: one line per input device, the default marked with *."""
    return [f"{'*' if d.default else ' '} {d.index:>2}  {d.name}  ({d.channels} channel{'s' * (d.channels != 1)})"
            for d in devices]


def resolve_device(devices: list[InputDevice], wanted: str) -> InputDevice:
    """The input device `wanted` names: its index, or a case-insensitive part of its name
    (a whole name wins over names that contain it). None found or several: a SetupError
    naming the problem and the choices."""
    wanted = str(wanted).strip()
    if not devices:
        raise SetupError(f"--mic-device {wanted!r}: there are no input devices (PortAudio lists none)")
    choices = "input devices: " + ", ".join(map(str, devices))
    if wanted.isdigit():
        picked = [d for d in devices if d.index == int(wanted)]
        if not picked:
            raise SetupError(f"--mic-device {wanted}: no input device has that index; {choices}")
        return picked[0]
    exact = [d for d in devices if d.name.casefold() == wanted.casefold()]
    matches = exact or [d for d in devices if wanted.casefold() in d.name.casefold()]
    if not wanted or not matches:
        raise SetupError(f"--mic-device {wanted!r}: no input device has that in its name; {choices}")
    if len(matches) > 1:
        raise SetupError(f"--mic-device {wanted!r} matches {len(matches)} input devices "
                         f"({', '.join(map(str, matches))}): give its index or more of its name")
    return matches[0]


def query_input_devices(flag: str = "--mic") -> list[InputDevice]:
    """The machine's input devices (needs sounddevice and PortAudio: a SetupError naming
    what is missing otherwise)."""
    from .live import import_sounddevice

    sounddevice = import_sounddevice(flag)
    try:
        devices = sounddevice.query_devices()
        default_input = int(sounddevice.default.device[0])   # -1: none
    except Exception as exc:   # PortAudioError
        lines = str(exc).strip().splitlines()
        raise SetupError(f"cannot list audio devices: {lines[0] if lines else type(exc).__name__}") from None
    return input_devices(devices, default_input if default_input >= 0 else None)
