//! The chart: an SVG bar chart of every ratio a run measured — for each
//! comparison (workload, params, metric), one bar per contestant, its median
//! over the reference contestant's, with a line at 1x. Written by hand: a
//! few rectangles and labels need no plotting library.

use std::fmt::Write;

use crate::record::Summary;
use crate::report::params_text;

const WIDTH: f64 = 960.0;
const LABEL: f64 = 360.0;
const BAR: f64 = 14.0;
const GAP: f64 = 10.0;
/// Ratios are drawn up to this; longer bars are cut (their label says).
const MAX_RATIO: f64 = 3.0;

/// Whether a larger value of `metric` is better.
pub fn higher_is_better(metric: &str) -> bool {
    metric == "rps" || metric.ends_with("_per_sec")
}

fn color(contestant: &str) -> &'static str {
    match contestant {
        "ouro-uring" | "ouro" | "ouro-msgring" => "#d9480f",
        "ouro-poll" | "ouro-mailbox" => "#f59f00",
        "raw" => "#495057",
        "tokio" => "#1971c2",
        "monoio" => "#2f9e44",
        _ => "#862e9c",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Whether `s` is the reference of a comparison that has ratios.
fn is_charted_reference(s: &Summary, summaries: &[Summary]) -> bool {
    Some(s.contestant) == s.reference
        && summaries.iter().any(|o| {
            o.ratio.is_some()
                && o.workload == s.workload
                && o.params == s.params
                && o.metric == s.metric
        })
}

/// The chart of `summaries`' ratios, under a title and lines of `notes`
/// (where and how it was measured).
pub fn svg(summaries: &[Summary], title: &str, notes: &[&str]) -> String {
    let rows: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.ratio.is_some() || is_charted_reference(s, summaries))
        .collect();
    let scale = (WIDTH - LABEL - 80.0) / MAX_RATIO;
    let mut body = String::new();
    let top = 44.0 + 14.0 * notes.len() as f64;
    let mut y = top;
    let mut previous: Option<&Summary> = None;
    for s in &rows {
        let same = previous.is_some_and(|p| {
            p.workload == s.workload && p.params == s.params && p.metric == s.metric
        });
        if !same {
            y += GAP;
            let better = if higher_is_better(s.metric) {
                "higher"
            } else {
                "lower"
            };
            let heading = format!(
                "{} {} · {} ({better} is better; 1x = {})",
                s.workload,
                params_text(&s.params),
                s.metric,
                s.reference.unwrap_or("?")
            );
            let _ = writeln!(
                body,
                r#"<text x="8" y="{:.0}" font-weight="bold">{}</text>"#,
                y + 11.0,
                escape(&heading)
            );
            y += BAR + 2.0;
        }
        previous = Some(s);
        let ratio = s.ratio.unwrap_or(1.0);
        let length = ratio.min(MAX_RATIO) * scale;
        let _ = writeln!(
            body,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text><rect x="{LABEL}" y="{y:.0}" width="{length:.1}" height="{:.0}" fill="{}"/><text x="{:.1}" y="{:.0}">{ratio:.2}x</text>"#,
            LABEL - 6.0,
            y + 11.0,
            escape(s.contestant),
            BAR - 2.0,
            color(s.contestant),
            LABEL + length + 4.0,
            y + 11.0,
        );
        y += BAR;
    }
    let height = y + 20.0;
    let one = LABEL + scale;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="8" y="22" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="8" y="{:.0}">{}</text>"#,
            38.0 + 14.0 * i as f64,
            escape(note)
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{one:.1}" y1="{:.0}" x2="{one:.1}" y2="{:.0}" stroke="black" stroke-dasharray="3,3"/><text x="{one:.1}" y="{:.0}" text-anchor="middle">1x</text>"#,
        top - 4.0,
        height - 10.0,
        top - 6.0
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::params;
    use serde_json::json;

    #[test]
    fn one_bar_per_ratio_under_its_heading() {
        let summary = |contestant, ratio| Summary {
            workload: "echo",
            contestant,
            params: params([("conns", json!(16))]),
            metric: "rps",
            median: 1.0,
            min: 1.0,
            max: 1.0,
            runs: 1,
            ratio,
            reference: Some("tokio"),
        };
        let svg = svg(
            &[
                summary("tokio", None),
                summary("ouro-uring", Some(1.25)),
                summary("raw", Some(5.0)),
            ],
            "t<1>",
            &["a note"],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("t&lt;1&gt;") && svg.contains(">a note<"));
        // The reference (at 1x) and the two others.
        assert_eq!(svg.matches("<rect x=").count(), 3, "{svg}");
        assert!(svg.contains(">1.00x<"));
        assert_eq!(svg.matches("echo conns=16 · rps").count(), 1);
        assert!(svg.contains(">1.25x<") && svg.contains(">5.00x<"));
    }
}
