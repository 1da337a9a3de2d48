//! Charts drawn on the server as inline SVG: the console works offline, ships no script for
//! them and needs no chart library. Three shapes cover its pictures — columns over time
//! buckets (follows per day, messages per hour, a push's delivery), horizontal bars (the
//! funnel, menu taps) and lanes of a per-minute series sharing one time axis (the launch night,
//! with the sold-out moment marked) — each a `<figure>` whose marks carry their figures as
//! `data-series`, `data-label` and `data-value`, so a tooltip (`<title>`), a screen reader
//! (`aria-label`) and a test read the same numbers the bars are drawn from.

use std::fmt::Write;

/// One series of a chart: its legend name, its CSS class (its colour) and its values.
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub values: Vec<i64>,
}

/// A chart's drawn width (the SVG's natural size: it shrinks to a narrower column, never
/// grows, so its text stays the page's size); the launch night's lanes span the page.
const WIDTH: f64 = 560.0;
const LANES_WIDTH: f64 = 1120.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = WIDTH - 10.0;
/// The widest a column is drawn, however few buckets there are.
const MAX_COLUMN: f64 = 28.0;

/// Text for SVG and HTML: the five characters that could end an attribute or start a tag.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(out: &mut String, id: &str, title: &str, width: f64, height: f64) {
    let _ = write!(
        out,
        r#"<figure class="chart" id="{id}"><figcaption>{t}</figcaption><svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{t}">"#,
        id = esc(id),
        t = esc(title),
    );
}

fn legend(out: &mut String, series: &[Series]) {
    out.push_str(r#"</svg><p class="legend">"#);
    for s in series {
        let total: i64 = s.values.iter().sum();
        let _ = write!(out, r#"<span class="{}"><i></i>{} <b>{total}</b></span>"#, esc(s.class), esc(s.name));
    }
    out.push_str("</p>");
}

fn close(out: &mut String, empty: bool) {
    if empty {
        out.push_str(r#"<p class="empty">暂无数据 No data yet</p>"#);
    }
    out.push_str("</figure>");
}

/// The step between labelled buckets so at most `most` labels show.
fn label_every(n: usize, most: usize) -> usize {
    n.div_ceil(most.max(1)).max(1)
}

/// Grouped columns: one group a bucket (`labels`), one column a series in it.
pub fn columns(id: &str, title: &str, labels: &[String], series: &[Series]) -> String {
    let (top, base, height) = (14.0, 176.0, 206.0);
    let mut out = String::new();
    open(&mut out, id, title, WIDTH, height);
    let max = series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0);
    axis(&mut out, max, top, base);
    let n = labels.len().max(1);
    let slot = (RIGHT - LEFT) / n as f64;
    let k = series.len().max(1);
    let width = (slot * 0.8 / k as f64).clamp(0.5, MAX_COLUMN);
    for (i, label) in labels.iter().enumerate() {
        let x0 = LEFT + slot * i as f64 + (slot - width * k as f64) / 2.0;
        for (j, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0);
            let h = if max > 0 { (base - top) * v as f64 / max as f64 } else { 0.0 };
            let _ = write!(
                out,
                r#"<rect class="{c}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}" data-series="{n}" data-label="{l}" data-value="{v}"><title>{l} · {n}: {v}</title></rect>"#,
                c = esc(s.class),
                x = x0 + width * j as f64,
                y = base - h,
                n = esc(s.name),
                l = esc(label),
            );
        }
        if i % label_every(labels.len(), 8) == 0 {
            let _ = write!(
                out,
                r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                LEFT + slot * (i as f64 + 0.5),
                base + 16.0,
                esc(label)
            );
        }
    }
    legend(&mut out, series);
    close(&mut out, max == 0);
    out
}

/// The y axis: the baseline, and the maximum as a grid line with its figure.
fn axis(out: &mut String, max: i64, top: f64, base: f64) {
    let _ = write!(
        out,
        r#"<line class="grid" x1="{LEFT}" x2="{RIGHT}" y1="{base}" y2="{base}"/><line class="grid" x1="{LEFT}" x2="{RIGHT}" y1="{top}" y2="{top}"/><text class="tick" x="{x}" y="{ty}" text-anchor="end">{max}</text><text class="tick" x="{x}" y="{base}" text-anchor="end">0</text>"#,
        x = LEFT - 6.0,
        ty = top + 4.0,
    );
}

/// Horizontal bars, one a row: its label, its bar (scaled to the longest), its figure.
pub fn bars(id: &str, title: &str, rows: &[(String, i64)], class: &str) -> String {
    let row = 26.0;
    let height = row * rows.len().max(1) as f64 + 8.0;
    let (label_w, bar_x, bar_end) = (170.0, 180.0, 500.0);
    let mut out = String::new();
    open(&mut out, id, title, WIDTH, height);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0);
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let w = if max > 0 { (bar_end - bar_x) * *v as f64 / max as f64 } else { 0.0 };
        let _ = write!(
            out,
            r#"<text class="label" x="{lx}" y="{ty:.1}" text-anchor="end">{l}</text><rect class="{c}" x="{bar_x}" y="{y:.1}" width="{w:.1}" height="{h}" data-series="{c}" data-label="{l}" data-value="{v}"><title>{l}: {v}</title></rect><text class="value" x="{vx:.1}" y="{ty:.1}">{v}</text>"#,
            lx = label_w,
            ty = y + 15.0,
            l = esc(label),
            c = esc(class),
            h = row - 8.0,
            vx = bar_x + w + 6.0,
        );
    }
    out.push_str("</svg>");
    close(&mut out, max == 0);
    out
}

/// A per-minute series in lanes sharing one time axis: each series its own strip scaled to
/// its own peak (a night's paid orders are a few hundredth of its opens, and would vanish on
/// one scale), `ticks` labelling the axis, `mark` a moment drawn across every lane.
pub fn lanes(
    id: &str,
    title: &str,
    series: &[Series],
    ticks: &[(usize, String)],
    mark: Option<(usize, String)>,
) -> String {
    let (lane, gap, top) = (54.0, 10.0, 6.0);
    let (left, right) = (80.0, LANES_WIDTH - 24.0);
    let height = top + (lane + gap) * series.len() as f64 + 20.0;
    let mut out = String::new();
    open(&mut out, id, title, LANES_WIDTH, height);
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0).max(1);
    let x = |i: usize| left + (right - left) * i as f64 / n as f64;
    let mut empty = true;
    for (k, s) in series.iter().enumerate() {
        let base = top + (lane + gap) * k as f64 + lane;
        let peak = s.values.iter().copied().max().unwrap_or(0);
        let total: i64 = s.values.iter().sum();
        empty &= total == 0;
        // One path a lane: a step for every minute, drawn only where the series moves.
        let mut d = format!("M{:.1},{base:.1}", x(0));
        let mut last = 0.0;
        for (i, v) in s.values.iter().enumerate() {
            let y = if peak > 0 { base - lane * *v as f64 / peak as f64 } else { base };
            if (y - last).abs() > f64::EPSILON || i == 0 {
                let _ = write!(d, " L{:.1},{y:.1}", x(i));
                last = y;
            }
            let _ = write!(d, " L{:.1},{y:.1}", x(i + 1));
        }
        let _ = write!(d, " L{:.1},{base:.1} Z", x(n));
        let _ = write!(
            out,
            r#"<g data-series="{name}" data-value="{total}" data-peak="{peak}"><title>{name}: {total} (每分钟峰值 peak {peak} a minute)</title><line class="grid" x1="{left}" x2="{right}" y1="{base:.1}" y2="{base:.1}"/><path class="{c}" d="{d}"/><text class="tick" x="{tx}" y="{ly:.1}" text-anchor="end">{name}</text><text class="tick" x="{tx}" y="{py:.1}" text-anchor="end">{peak}</text></g>"#,
            name = esc(s.name),
            c = esc(s.class),
            tx = left - 6.0,
            ly = base,
            py = base - lane + 10.0,
        );
    }
    let bottom = top + (lane + gap) * series.len() as f64;
    for (i, label) in ticks {
        let _ = write!(
            out,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(*i),
            bottom + 8.0,
            esc(label)
        );
    }
    if let Some((i, label)) = mark {
        let _ = write!(
            out,
            r#"<g class="mark" data-label="{l}"><line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bottom:.1}"/><text x="{tx:.1}" y="{ty}">{l}</text></g>"#,
            l = esc(&label),
            x = x(i),
            tx = x(i) + 4.0,
            ty = top + 10.0,
        );
    }
    legend(&mut out, series);
    close(&mut out, empty);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_figures_carried() {
        let svg = bars("f", "Funnel", &[("<b>opens</b>".into(), 7), ("paid".into(), 0)], "s1");
        assert!(svg.contains(r#"data-label="&lt;b&gt;opens&lt;/b&gt;" data-value="7""#), "{svg}");
        assert!(!svg.contains("<b>opens"), "{svg}");
        assert!(!svg.contains("暂无数据 No data yet"));
        let none = columns("c", "Empty", &["a".into()], &[Series { name: "x", class: "s1", values: vec![0] }]);
        assert!(none.contains("暂无数据 No data yet"), "{none}");
    }
}
