//! Output: a readable table, or one JSON object per line.

use serde_json::{json, Value};

use crate::record::{Params, Summary};

/// One line per summary: `{"workload", "contestant", "params", "metric",
/// "value"}`, where `value` is the median over the runs.
pub fn json_lines(summaries: &[Summary]) -> String {
    summaries
        .iter()
        .map(|s| {
            let line = json!({
                "workload": s.workload,
                "contestant": s.contestant,
                "params": s.params,
                "metric": s.metric,
                "value": s.median,
            });
            format!("{line}\n")
        })
        .collect()
}

/// An aligned table: one row per summary, with the spread of the runs
/// ((max − min) / median) and the ratio to the reference contestant.
pub fn table(summaries: &[Summary]) -> String {
    let header = [
        "workload",
        "params",
        "contestant",
        "metric",
        "median",
        "spread",
        "ratio",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = summaries
        .iter()
        .map(|s| {
            [
                s.workload.to_string(),
                params_text(&s.params),
                s.contestant.to_string(),
                s.metric.to_string(),
                format_value(s.median),
                spread_text(s),
                match (s.ratio, s.reference) {
                    (Some(ratio), Some(reference)) => format!("{ratio:.2}x {reference}"),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Numbers (median, spread) align right, words left.
            let cell = if (4..=5).contains(&i) {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            };
            line.push_str(&cell);
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn params_text(params: &Params) -> String {
    params
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => format!("{name}={text}"),
            other => format!("{name}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn spread_text(s: &Summary) -> String {
    if s.runs < 2 || s.median == 0.0 {
        return String::new();
    }
    format!("{:.1}%", (s.max - s.min) / s.median * 100.0)
}

/// Large values as integers with thousands separators, small ones with
/// two decimals.
pub fn format_value(value: f64) -> String {
    if value.abs() < 1000.0 {
        return format!("{value:.2}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::params;

    fn summary() -> Summary {
        Summary {
            workload: "nop",
            contestant: "ouro",
            params: params([("batch", json!(256))]),
            metric: "ops_per_sec",
            median: 12_345_678.4,
            min: 12_000_000.0,
            max: 12_600_000.0,
            runs: 5,
            ratio: Some(0.934),
            reference: Some("raw"),
        }
    }

    #[test]
    fn values_are_grouped_by_thousands() {
        assert_eq!(format_value(12_345_678.4), "12,345,678");
        assert_eq!(format_value(1000.0), "1,000");
        assert_eq!(format_value(-4_500.0), "-4,500");
        assert_eq!(format_value(12.345), "12.35");
    }

    #[test]
    fn json_lines_carry_the_median() {
        let line = json_lines(&[summary()]);
        assert_eq!(
            line,
            "{\"workload\":\"nop\",\"contestant\":\"ouro\",\"params\":{\"batch\":256},\
             \"metric\":\"ops_per_sec\",\"value\":12345678.4}\n"
        );
    }

    #[test]
    fn table_rows_show_spread_and_ratio() {
        let table = table(&[summary()]);
        let row = table.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "nop",
                "batch=256",
                "ouro",
                "ops_per_sec",
                "12,345,678",
                "4.9%",
                "0.93x",
                "raw"
            ]
        );
    }
}
