"""The report's figures, as plotly figures (rendered by plotly.js, inlined once in the HTML file).

* effect vs layer with the cluster-bootstrap band, per attribute (P2's window curves for LocoGen);
* a heatmap of effect by layer × attribute (P3's layer heatmap; × step_start when the run sweeps it);
* causal tracing (P1): restored-score bars over the denoiser sites in forward order (Fig. 2), and the
  text-encoder layer × token position grid (Fig. 3).
"""

from __future__ import annotations

import plotly.graph_objects as go

from analysis.effects import GroupRanking, RankedVariant

LAYOUT = dict(template="plotly_white", height=360, margin=dict(l=60, r=20, t=50, b=60))


def _x(v: RankedVariant):
    return v.window_start if v.window_start is not None else v.index


def _by_x(variants: list[RankedVariant]) -> list[RankedVariant]:
    return sorted(variants, key=lambda v: (_x(v) if _x(v) is not None else -1, v.variant))


def effect_curve(group: GroupRanking) -> go.Figure:
    """Effect vs layer (window start) with the interval as a band; one trace per kind, position, step."""
    fig = go.Figure()
    series: dict[str, list[RankedVariant]] = {}
    for v in group.variants:
        name = " ".join(str(p) for p in (v.kind, v.position, f"step {v.step_start}" if v.step_start else None) if p)
        series.setdefault(name or "variants", []).append(v)
    for name, variants in series.items():
        variants = _by_x(variants)
        x = [_x(v) for v in variants]
        if all(v.ci_low is not None for v in variants):  # one prompt: no interval, no band
            fig.add_trace(go.Scatter(x=x + x[::-1], y=[v.ci_high for v in variants] + [v.ci_low for v in variants][::-1],
                                     fill="toself", line=dict(width=0), opacity=0.25, showlegend=False,
                                     hoverinfo="skip", name=f"{name} 95% CI"))
        fig.add_trace(go.Scatter(x=x, y=[v.effect for v in variants], mode="lines+markers", name=name,
                                 text=[v.variant for v in variants],
                                 hovertemplate="%{text}<br>effect %{y:.4g}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="gray", dash="dot"))
    fig.update_layout(title=f"{group.method} · {group.label}: effect on {group.rule.metric} "
                      f"({'higher' if group.rule.sign > 0 else 'lower'} = stronger; n={group.n_prompts} prompts)",
                      xaxis_title="layer (forward index; window start)",
                      yaxis_title=f"effect vs {group.rule.reference}", **LAYOUT)
    return fig


def attribute_heatmap(groups: list[GroupRanking]) -> go.Figure | None:
    """Effect by layer (columns) and attribute (rows) for one run; × step_start when swept."""
    rows: dict[str, dict] = {}
    columns: dict = {}
    for g in groups:
        if g.concept:
            continue
        for v in g.variants:
            row = g.attribute or "(none)"
            if v.step_start:
                row += f" @ step {v.step_start}"
            rows.setdefault(row, {})[v.variant] = v.effect
            columns.setdefault(v.variant, (v.kind or "", _x(v) if _x(v) is not None else -1, v.position or ""))
    if not rows:
        return None
    order = sorted(columns, key=lambda c: columns[c])
    z = [[rows[r].get(c) for c in order] for r in rows]
    fig = go.Figure(go.Heatmap(z=z, x=order, y=list(rows), colorscale="RdBu", zmid=0,
                               colorbar=dict(title="effect")))
    method, metric = groups[0].method, groups[0].rule.metric
    fig.update_layout(title=f"{method}: effect by layer and attribute ({metric})", xaxis_title="variant",
                      **(LAYOUT | {"height": 160 + 40 * len(rows)}))
    return fig


def trace_bars(group: GroupRanking, site_order: list[str]) -> go.Figure | None:
    """P1 Fig. 2: the restored statistic at each denoiser site, in forward order, against the corrupted run."""
    denoiser = [v for v in group.variants if v.position is None and v.site]
    if not denoiser:
        return None
    rank = {name: i for i, name in enumerate(site_order)}
    denoiser.sort(key=lambda v: (rank.get(v.site, len(rank)), v.variant))
    bars = [v.ci_low is not None for v in denoiser]  # one prompt: no interval, no error bar
    fig = go.Figure(go.Bar(x=[v.variant for v in denoiser], y=[v.value for v in denoiser],
                           marker_color=["crimson" if v.selected else "steelblue" for v in denoiser],
                           error_y=dict(type="data", symmetric=False, visible=any(bars),
                                        array=[v.ci_high - v.effect if b else 0 for v, b in zip(denoiser, bars)],
                                        arrayminus=[v.effect - v.ci_low if b else 0 for v, b in zip(denoiser, bars)])))
    fig.add_hline(y=denoiser[0].reference, line=dict(color="gray", dash="dot"), annotation_text="corrupted")
    fig.update_layout(title=f"causal tracing · {group.label}: restored {group.rule.metric} per denoiser site "
                      "(red: above the threshold)", xaxis_title="site (forward order)", yaxis_title=group.rule.metric,
                      **LAYOUT)
    return fig


def trace_text_grid(group: GroupRanking) -> go.Figure | None:
    """P1 Fig. 3: text-encoder layer × token position grid of the restored statistic."""
    text = [v for v in group.variants if v.position is not None]
    if not text:
        return None
    positions = sorted({v.position for v in text})

    def layer(v) -> tuple:  # text-encoder sites are numbered per encoder: the encoder is part of the key
        return ((v.site or "").partition(".")[0], v.index if v.index is not None else -1,
                v.kind != "text_self_attn", v.variant.rpartition("@")[0])

    layers = sorted({layer(v) for v in text})
    cell = {(v.position, layer(v)): v.value for v in text}
    z = [[cell.get((p, key)) for key in layers] for p in positions]
    fig = go.Figure(go.Heatmap(z=z, x=[key[3] for key in layers], y=positions, colorscale="Viridis",
                               colorbar=dict(title=group.rule.metric)))
    fig.update_layout(title=f"causal tracing · {group.label}: text-encoder state × token position",
                      **(LAYOUT | {"height": 200 + 40 * len(positions)}))
    return fig
