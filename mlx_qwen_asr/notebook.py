"""The Jupyter view of a transcription: a timeline strip (segments, words, time axis), the
transcript with each word's start time printed above it, and the audio; playing it
highlights the current word, clicking a word plays from there. Self-contained HTML: one
scoped <style>, one small inline script, every text escaped, ids unique per view."""

from __future__ import annotations

import html
import uuid

from .clock import clock_tenths
from .notebook_audio import player_audio

# Above this many words the strip shows segments only (the transcript still has them all).
STRIP_MAX_WORDS = 1500
# Word rows in the strip, and the label widths guessed when choosing a word's row.
MAX_LANES = 3
NOMINAL_STRIP_PX = 900
LABEL_CHAR_PX, LABEL_PAD_PX = 6.5, 10
HOLD_SECONDS = 1.0
TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)

_CSS = """
#ID{background:#fff;color:#1f2328;font:13px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
 border:1px solid #d0d7de;border-radius:8px;padding:10px 14px 12px;margin:4px 0}
#ID .q-sum{color:#57606a;font-size:12px;margin:0 0 8px}
#ID .q-sum b{color:#bc4c00}
#ID audio{width:100%;height:36px;margin:0 0 6px;display:block}
#ID .q-note{color:#57606a;font-size:12px;margin:0 0 6px}
#ID .q-track{position:relative;margin:4px 16px 4px 4px;cursor:pointer;user-select:none}
#ID .q-row{position:relative;height:22px;margin-bottom:3px}
#ID .q-seg{position:absolute;top:0;height:22px;box-sizing:border-box;border-radius:4px;padding:0 6px;
 background:#ddf4ff;border:1px solid #54aeff;color:#0a3069;font-size:11px;line-height:20px;
 white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#ID .q-seg.q-odd{background:#fbefff;border-color:#c297ff;color:#3e1f79}
#ID .q-bar{position:absolute;top:0;height:22px;border-radius:3px;background:#eaeef2;
 box-shadow:inset 2px 0 0 #8c959f}
#ID .q-lab{position:absolute;top:0;height:22px;line-height:22px;padding-left:5px;font-size:11.5px;
 white-space:nowrap;overflow:hidden;text-overflow:ellipsis;box-sizing:border-box;pointer-events:none}
#ID .q-axis{position:relative;height:18px;border-top:1px solid #8c959f}
#ID .q-tick{position:absolute;top:0;height:5px;border-left:1px solid #8c959f}
#ID .q-tl{position:absolute;top:4px;transform:translateX(-50%);font-size:10.5px;color:#57606a;
 font-variant-numeric:tabular-nums;white-space:nowrap}
#ID .q-grid{position:absolute;top:0;bottom:18px;border-left:1px dashed #d8dee4;pointer-events:none}
#ID .q-head{position:absolute;top:-2px;bottom:16px;width:0;border-left:2px solid #cf222e;pointer-events:none;display:none}
#ID .q-text{margin-top:8px}
#ID .q-line{display:flex;gap:12px;padding:6px 0 2px;border-top:1px solid #eaeef2}
#ID .q-range{flex:0 0 auto;width:5.6em;font-size:11px;color:#57606a;padding-top:14px;
 font-variant-numeric:tabular-nums}
#ID .q-words{flex:1 1 auto}
#ID .q-w{display:inline-block;vertical-align:top;margin:0 1px 5px 0;padding:0 4px 1px;border-radius:4px;
 cursor:pointer;font-size:14px;line-height:1.25}
#ID .q-w i{display:block;font-style:normal;font-size:10px;line-height:1.3;color:#6e7781;
 font-variant-numeric:tabular-nums}
#ID .q-st{cursor:pointer;border-radius:4px;padding:2px 4px;font-size:14px;line-height:1.6;
 -webkit-box-decoration-break:clone;box-decoration-break:clone}
#ID .q-range.q-top{padding-top:3px}
#ID .q-w:hover,#ID .q-st:hover{background:#f3f4f6}
#ID .q-w.on{background:#ffd33d;color:#1f2328}
#ID .q-st.on{background:#fff8c5;box-shadow:inset 0 -2px 0 #d4a72c}
#ID .q-w.on i{color:#1f2328}
#ID .q-bar.on{background:#ffd33d;box-shadow:inset 2px 0 0 #bf8700}
#ID .q-lab.on{font-weight:600}
#ID .q-seg.on{border-width:2px}
#ID details{margin-top:6px;font-size:12px;color:#57606a}
#ID details table{font-size:12px;color:#1f2328}
"""

# Everything with data-s/data-e gets "on" while the audio is inside [s, e); a click on one
# seeks to its start, a click elsewhere on the strip to that point. The audio's clock runs
# its data-delay (the codec's) ahead of the transcript's.
_JS = """(function(){var r=document.getElementById("ID");if(!r)return;
var a=r.querySelector("audio"),h=r.querySelector(".q-head"),tr=r.querySelector(".q-track"),D=DUR,t0=0,
L=a?(+a.dataset.delay||0):0;
var els=[].slice.call(r.querySelectorAll("[data-s]")).map(function(e){return [e,+e.dataset.s,+e.dataset.e,false]});
function show(t){for(var i=0;i<els.length;i++){var x=els[i],on=t>=x[1]&&t<x[2];
if(on!==x[3]){x[3]=on;x[0].classList.toggle("on",on)}}
if(h&&D>0){h.style.display="block";h.style.left=Math.min(100,100*t/D)+"%"}}
function now(){return a?Math.max(0,a.currentTime-L):t0}
function seek(t){t0=t;if(a){a.currentTime=t+L;a.play()}show(t+1e-3)}
function loop(){show(now());if(a&&!a.paused)requestAnimationFrame(loop)}
if(a){a.addEventListener("timeupdate",function(){show(now())});a.addEventListener("seeked",function(){show(now())});
a.addEventListener("play",loop)}
r.addEventListener("click",function(ev){var e=ev.target.closest("[data-s]");
if(e&&r.contains(e)){seek(+e.dataset.s);return}
if(tr&&tr.contains(ev.target)&&D>0){var b=tr.getBoundingClientRect();seek(Math.max(0,(ev.clientX-b.left)/b.width*D))}});
})();"""


def tick_label(seconds: float, step: float) -> str:
    if step < 1:
        return f"{seconds:g} s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def tick_step(duration: float) -> float:
    """The smallest step giving at most 12 ticks."""
    return next((s for s in TICK_STEPS if duration / s <= 12), TICK_STEPS[-1])


def timeline_html(result, summary: str, table: str) -> str:
    """The whole view of a Transcription; `summary` and `table` are ready HTML."""
    view_id = f"mqa-{uuid.uuid4().hex[:12]}"
    duration = max(result.duration, max((s.end for s in result.segments), default=0.0), 1e-3)
    audio = player_audio(result.source, result.duration)
    player = (f'<audio controls preload="auto" data-delay="{audio.delay:.4f}" src="{html.escape(audio.src)}"></audio>'
              if audio.src else "")
    note = f'<p class="q-note">{audio.note}</p>' if audio.note else ""
    words = [(s_index, item) for s_index, s in enumerate(result.segments) for item in s.word_items()]
    parts = [f'<div id="{view_id}" class="mqa-view">', f"<style>{_CSS.replace('#ID', '#' + view_id)}</style>",
             f'<p class="q-sum">{summary}</p>', player, note,
             _strip(result.segments, words if len(words) <= STRIP_MAX_WORDS else [], duration),
             _transcript(result.segments, result.words is not None),
             f"<details><summary>segments</summary>{table}</details>" if table else "",
             f"<script type=\"text/javascript\">{_JS.replace('ID', view_id).replace('DUR', f'{duration:.3f}')}</script>", "</div>"]
    return "".join(parts)


def _pct(seconds: float, duration: float) -> str:
    return f"{100 * min(max(seconds, 0.0), duration) / duration:.3f}%"


def _times(start: float, end: float) -> str:
    return f'data-s="{start:.3f}" data-e="{end:.3f}"'


def word_lanes(words, duration: float) -> list[int]:
    """A strip row for each word: the first row whose last label (its width guessed for a
    strip NOMINAL_STRIP_PX wide) ends before the word starts, else the row that frees first."""
    seconds_per_px = duration / NOMINAL_STRIP_PX
    ends = []
    lanes = []
    for _, (start, _, text) in words:
        free = [i for i, end in enumerate(ends) if end <= start]
        lane = free[0] if free else (len(ends) if len(ends) < MAX_LANES else ends.index(min(ends)))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = start + (LABEL_PAD_PX + LABEL_CHAR_PX * len(text)) * seconds_per_px
        lanes.append(lane)
    return lanes


def _until(words, k: int) -> float:
    """A word stays highlighted until the next word in its segment starts (at most
    HOLD_SECONDS past its end), so the pauses between words do not blink."""
    segment, (start, end, _) = words[k]
    if k + 1 < len(words) and words[k + 1][0] == segment:
        return max(end, min(words[k + 1][1][0], end + HOLD_SECONDS))
    return end


# Diarized views: each speaker's colour (segment bands, words, transcript lines), by first appearance.
SPEAKER_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def speaker_colours(segments) -> dict:
    order = list(dict.fromkeys(s.speaker for s in segments if getattr(s, "speaker", None)))
    return {name: SPEAKER_COLOURS[i % len(SPEAKER_COLOURS)] for i, name in enumerate(order)}


def _strip(segments, words, duration: float) -> str:
    """Segments on one row, words alternating between two rows (so each label has the room
    up to the next word but one), a tick axis, grid lines and the playhead."""
    rows = ['<div class="q-track">']
    step = tick_step(duration)
    ticks = [i * step for i in range(int(duration / step + 1e-9) + 1)]
    rows += [f'<div class="q-grid" style="left:{_pct(t, duration)}"></div>' for t in ticks[1:]]
    seg_row = []
    colours = speaker_colours(segments)
    for i, s in enumerate(segments):
        if s.end <= s.start:
            continue
        label = f"{i + 1} · {clock_tenths(s.start, pad_minutes=False)}–{clock_tenths(s.end, pad_minutes=False)}"
        colour = ""
        if colours.get(s.speaker):   # a diarized band: its speaker's colour and name
            label, colour = f"{s.speaker} · {label}", f";background:{colours[s.speaker]};color:#fff"
        seg_row.append(f'<div class="q-seg{" q-odd" if i % 2 else ""}" {_times(s.start, s.end)} '
                       f'style="left:{_pct(s.start, duration)};width:{_pct(s.end - s.start, duration)}{colour}" '
                       f'title="{html.escape(label)}">{html.escape(label)}</div>')
    rows.append(f'<div class="q-row">{"".join(seg_row)}</div>')
    if words:
        lanes = [[] for _ in range(max(word_lanes(words, duration)) + 1)]
        placed = list(zip(word_lanes(words, duration), words))
        for k, (lane, (_, (start, end, text))) in enumerate(placed):
            following = next((w[1][0] for l, w in placed[k + 1:] if l == lane), duration)
            until = _until(words, k)
            lanes[lane].append(
                f'<div class="q-bar" {_times(start, until)} style="left:{_pct(start, duration)};'
                f'width:{_pct(max(end - start, 0.0), duration)}"></div>'
                f'<span class="q-lab" {_times(start, until)} style="left:{_pct(start, duration)};'
                f'max-width:{_pct(max(following - start, 0.0), duration)}">{html.escape(text)}</span>')
        rows += [f'<div class="q-row">{"".join(lane)}</div>' for lane in lanes]
    axis = "".join(f'<div class="q-tick" style="left:{_pct(t, duration)}"></div>'
                   f'<span class="q-tl" style="left:{_pct(t, duration)}">{tick_label(t, step)}</span>' for t in ticks)
    rows += [f'<div class="q-axis">{axis}</div>', '<div class="q-head"></div>', "</div>"]
    return "".join(rows)


def _transcript(segments, timed: bool) -> str:
    """One line per segment: its time range, then its words (each with its start time above
    it) or, without word times, its text."""
    lines = []
    colours = speaker_colours(segments)
    for s in segments:
        if not s.text and not s.words:
            continue
        colour = colours.get(s.speaker)
        mark = f' style="border-bottom:2px solid {colour}"' if colour else ""
        if timed:
            items = [(0, item) for item in s.word_items()]   # (segment, word), as _until takes them
            sure = [w.probability for w in s.words or []] if len(s.words or []) == len(items) else [None] * len(items)
            body = "".join(f'<span class="q-w" {_times(start, _until(items, k))}{_word_style(colour, p)}>'
                           f'<i>{clock_tenths(start, pad_minutes=False)}</i>{html.escape(text)}</span>'
                           for k, ((_, (start, _, text)), p) in enumerate(zip(items, sure)))
        else:
            body = f'<span class="q-st"{mark} {_times(s.start, s.end)}>{_text_by_sureness(s)}</span>'
        if colour:   # the speaker's name opens the line, in their colour
            body = f'<b style="color:{colour}">{html.escape(s.speaker)}</b> ' + body
        lines.append(f'<div class="q-line"><span class="q-range{"" if timed else " q-top"}">{clock_tenths(s.start)}<br>– {clock_tenths(s.end)}</span>'
                     f'<span class="q-words">{body}</span></div>')
    return f'<div class="q-text">{"".join(lines)}</div>'


# Words the model was less sure of are drawn lighter: opacity from LIGHTEST (probability 0)
# to 1 (probability 1); sure words (SURE or more) are left as they are.
LIGHTEST = 0.35
SURE = 0.95


def _sureness(probability: float | None) -> str:
    """The style and hover title of a word of this probability ('' for a sure or unknown one)."""
    return _word_style(None, probability)


def _word_style(colour: str | None, probability: float | None) -> str:
    """A timed word's style: its speaker's underline (diarized), lighter when less sure."""
    styles, title = [], ""
    if colour:
        styles.append(f"border-bottom:2px solid {colour}")
    if probability is not None and probability < SURE:
        styles.append(f"opacity:{LIGHTEST + (1.0 - LIGHTEST) * probability:.2f}")
        title = f' title="p={probability:.2f}"'
    return (f' style="{";".join(styles)}"' if styles else "") + title


def _text_by_sureness(segment) -> str:
    """A segment's text, its less sure words (confidence.WordProbability) drawn lighter."""
    words = segment.word_probabilities or []
    out, at = [], 0
    for word in words:
        style = _sureness(word.probability)
        if not style:
            continue
        begin, end = word.span
        out.append(html.escape(segment.text[at:begin]))
        out.append(f"<span{style}>{html.escape(segment.text[begin:end])}</span>")
        at = end
    out.append(html.escape(segment.text[at:]))
    return "".join(out)
