"""The simulation's plots: a self-contained HTML page (inline SVG, no scripts or CDNs) of load,
VMs and spill over time, and a PNG beside it (matplotlib)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, PAD = 960, 200, 40
MAX_POINTS = 1500  # longer timelines are averaged (rates) or maxed (VMs) into this many points


def _downsample(t: np.ndarray, series: dict[str, np.ndarray], how: dict[str, str]):
    if t.size <= MAX_POINTS:
        return t, series
    step = int(np.ceil(t.size / MAX_POINTS))
    cut = t.size // step * step
    out = {}
    for name, values in series.items():
        blocks = values[:cut].reshape(-1, step)
        out[name] = blocks.max(axis=1) if how.get(name) == "max" else blocks.mean(axis=1)
    return t[:cut:step], out


def _svg_panel(
    title: str, t: np.ndarray, lines: list[tuple[str, np.ndarray, str]], unit: str
) -> str:
    top = max(max((float(v.max()) for _, v, _ in lines if v.size), default=1.0), 1e-9) * 1.05
    span = max(float(t[-1] - t[0]), 1e-9) if t.size else 1.0
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT + 2 * PAD}" role="img" '
        f'aria-label="{html.escape(title)}"><text x="{PAD}" y="16" font-weight="bold">'
        f"{html.escape(title)}</text>",
        f'<line x1="{PAD}" y1="{HEIGHT + PAD}" x2="{WIDTH - 10}" y2="{HEIGHT + PAD}" '
        'stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT + PAD}" stroke="#888"/>',
        f'<text x="2" y="{PAD + 4}" font-size="11">{top:.3g}</text>',
        f'<text x="2" y="{HEIGHT + PAD}" font-size="11">0</text>',
        f'<text x="{WIDTH - 160}" y="{HEIGHT + PAD + 28}" font-size="11">time (s), '
        f"{html.escape(unit)}</text>",
    ]
    for k, (name, values, color) in enumerate(lines):
        if not values.size:
            continue
        xs = PAD + (t - t[0]) / span * (WIDTH - PAD - 10)
        ys = PAD + HEIGHT - values / top * HEIGHT
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{points}"/>'
        )
        parts.append(
            f'<text x="{PAD + 10 + 150 * k}" y="{PAD - 6}" font-size="12" '
            f'fill="{color}">{html.escape(name)}</text>'
        )
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT + PAD + 14}" font-size="11">{t[0]:.0f}</text>'
        f'<text x="{WIDTH - 60}" y="{HEIGHT + PAD + 14}" font-size="11">'
        f"{t[-1]:.0f}</text>"
        if t.size
        else ""
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _series(timeline, tick_s: float):
    t = np.asarray(timeline.t_s, dtype=float)
    raw = {
        "arrivals": np.asarray(timeline.arrivals, float) / tick_s,
        "to_burst": np.asarray(timeline.to_burst, float) / tick_s,
        "rejected": np.asarray(timeline.rejected, float) / tick_s,
        "vm_ready": np.asarray(timeline.vm_ready, float),
        "vm_desired": np.asarray(timeline.vm_desired, float),
        "vm_booting": np.asarray(timeline.vm_booting, float),
    }
    how = {"vm_ready": "max", "vm_desired": "max", "vm_booting": "max"}
    return _downsample(t, raw, how)


def _section(result, tick_s: float) -> str:
    t, s = _series(result.timeline, tick_s)
    summary = result.summary
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in summary.items()
        if k != "tenants"
    )
    panels = [
        _svg_panel(
            "Load",
            t,
            [
                ("arrivals/s", s["arrivals"], "#1f77b4"),
                ("to functions/s", s["to_burst"], "#d62728"),
                ("rejected/s", s["rejected"], "#7f7f7f"),
            ],
            "requests/s",
        ),
        _svg_panel(
            "VM replicas",
            t,
            [
                ("ready", s["vm_ready"], "#2ca02c"),
                ("desired", s["vm_desired"], "#ff7f0e"),
                ("booting", s["vm_booting"], "#9467bd"),
            ],
            "replicas",
        ),
    ]
    return (
        f"<section><h2>{html.escape(str(summary.get('policy')))}</h2>{''.join(panels)}"
        f"<details><summary>summary</summary><table>{rows}</table></details></section>"
    )


def write_html(results, out: str | Path, tick_s: float = 1.0) -> Path:
    """One page, a section per run (load, VMs, spill over time and the summary table)."""
    results = results if isinstance(results, list) else [results]
    out = Path(out)
    trace = results[0].summary.get("trace") if results else ""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tidegate simulation"
        "</title><style>body{font-family:sans-serif;margin:24px} table{border-collapse:"
        "collapse} th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}"
        f"</style></head><body><h1>Simulation of {html.escape(str(trace))}</h1>"
        + "".join(_section(r, tick_s) for r in results)
        + "</body></html>"
    )
    out.write_text(page)
    return out


def write_png(result, out: str | Path, tick_s: float = 1.0) -> Path | None:
    """A PNG of the same panels; ``None`` when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    t, s = _series(result.timeline, tick_s)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    ax1.plot(t, s["arrivals"], label="arrivals/s", lw=0.8)
    ax1.plot(t, s["to_burst"], label="to functions/s", lw=0.8, color="tab:red")
    ax1.set_ylabel("requests/s")
    ax1.legend(loc="upper right")
    ax2.step(t, s["vm_ready"], label="ready", where="post", color="tab:green")
    ax2.step(t, s["vm_desired"], label="desired", where="post", color="tab:orange", lw=0.8)
    ax2.set_ylabel("VM replicas")
    ax2.set_ylim(
        bottom=0,
        top=max(float(s["vm_desired"].max(initial=1)), float(s["vm_ready"].max(initial=1))) + 1,
    )
    ax2.set_xlabel("time (s)")
    ax2.legend(loc="upper right")
    fig.suptitle(png_title(result.summary))
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def png_title(summary: dict, width: int = 110) -> str:
    """The PNG's title: the policy, the model and the trace, wrapped to the figure's width (a
    synth: trace's parameters ran past its right edge, and the model was not named)."""
    import textwrap

    text = f"{summary.get('policy')}, {summary.get('model')}, on {summary.get('trace')}"
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
