//! `report`: the figures of `ouro-bench/README.md`, generated from the
//! results a run saved with `--out DIR` (`DIR/results.json`) rather than
//! typed, so that the README shows what a recorded run measured: per
//! workload, a table of every contestant's median with its ratio to the
//! reference contestant, under the date, the command and the machine of the
//! run. The tables replace what lies between [`BEGIN`] and [`END`] in the
//! README; the rest of the file is left as it is, so re-running changes
//! nothing.

use std::io;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::record::Params;
use crate::report::{format_value, params_text};

/// The line after which the generated figures start.
pub const BEGIN: &str = "<!-- figures:begin -->";
/// The line before which the generated figures end.
pub const END: &str = "<!-- figures:end -->";

/// Options of `report`.
#[derive(Debug, Args)]
pub struct Options {
    /// Results written by `--out DIR` (DIR/results.json), or directories:
    /// every `.json` file below them, in name order.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
    /// Replace the figures between `<!-- figures:begin -->` and
    /// `<!-- figures:end -->` in this file (without it, print them).
    #[arg(long, value_name = "FILE")]
    pub readme: Option<PathBuf>,
    /// With --readme: change nothing, and fail if the file's figures are
    /// not those the results give.
    #[arg(long, requires = "readme")]
    pub check: bool,
}

/// Prints the figures, or writes (or checks) them into the README.
pub fn run(options: &Options) -> io::Result<()> {
    let mut runs = Vec::new();
    for file in result_files(&options.results)? {
        let text = std::fs::read_to_string(&file).map_err(|err| in_file(&file, err))?;
        runs.push(Run::parse(&text).map_err(|err| in_file(&file, err))?);
    }
    runs.sort_by_key(Run::order);
    let figures = markdown(&runs);
    let Some(readme) = &options.readme else {
        print!("{figures}");
        return Ok(());
    };
    let before = std::fs::read_to_string(readme).map_err(|err| in_file(readme, err))?;
    let after = splice(&before, &figures).map_err(|err| in_file(readme, err))?;
    if options.check {
        if after != before {
            return Err(in_file(
                readme,
                io::Error::other("its figures are not those of the results: run without --check"),
            ));
        }
        return Ok(());
    }
    if after != before {
        std::fs::write(readme, after).map_err(|err| in_file(readme, err))?;
    }
    Ok(())
}

fn in_file(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// The files `paths` name, a directory standing for every `.json` file
/// below it, sorted by path.
fn result_files(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            json_files_below(path, &mut found)?;
            if found.is_empty() {
                return Err(in_file(path, io::Error::other("no .json file below it")));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn json_files_below(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|err| in_file(dir, err))? {
        let path = entry?.path();
        if path.is_dir() {
            json_files_below(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "json") {
            found.push(path);
        }
    }
    Ok(())
}

/// One saved invocation of the benchmark.
#[derive(Debug)]
struct Run {
    command: String,
    machine: String,
    unix_time: u64,
    figures: Vec<Figure>,
    goals: Vec<Goal>,
}

/// One summary of a run: a contestant's median for a workload, params and
/// metric.
#[derive(Debug)]
struct Figure {
    workload: String,
    contestant: String,
    params: String,
    metric: String,
    median: f64,
    ratio: Option<f64>,
    reference: Option<String>,
}

#[derive(Debug)]
struct Goal {
    goal: String,
    met: bool,
    detail: String,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn text_field(value: &Value, name: &str) -> io::Result<String> {
    value[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| invalid(format!("\"{name}\" is missing or not a string in {value}")))
}

fn number_field(value: &Value, name: &str) -> io::Result<f64> {
    value[name]
        .as_f64()
        .ok_or_else(|| invalid(format!("\"{name}\" is missing or not a number in {value}")))
}

fn list_field<'a>(value: &'a Value, name: &str) -> io::Result<&'a Vec<Value>> {
    value[name]
        .as_array()
        .ok_or_else(|| invalid(format!("\"{name}\" is missing or not a list")))
}

/// The order of `all`, in which runs of single workloads are shown too.
const WORKLOAD_ORDER: [&str; 6] = ["nop", "timers", "echo", "http", "idle", "msg"];

impl Run {
    /// Where the run goes among others: by its first workload's place in
    /// `all` (unknown workloads last).
    fn order(&self) -> usize {
        self.figures.first().map_or(usize::MAX, |figure| {
            (WORKLOAD_ORDER.iter())
                .position(|&w| w == figure.workload)
                .unwrap_or(WORKLOAD_ORDER.len())
        })
    }

    /// Reads a results.json as `--out` writes it (see
    /// `report::results_json`).
    fn parse(text: &str) -> io::Result<Run> {
        let json: Value = serde_json::from_str(text)
            .map_err(|err| invalid(format!("not a results file: {err}")))?;
        let unix_time = json["unix_time"]
            .as_u64()
            .ok_or_else(|| invalid("\"unix_time\" is missing or not a whole number".into()))?;
        let figures = list_field(&json, "results")?
            .iter()
            .map(Figure::parse)
            .collect::<io::Result<Vec<_>>>()?;
        let goals = match json.get("goals") {
            None => Vec::new(),
            Some(_) => list_field(&json, "goals")?
                .iter()
                .map(Goal::parse)
                .collect::<io::Result<Vec<_>>>()?,
        };
        Ok(Run {
            command: text_field(&json, "command")?,
            machine: text_field(&json, "machine")?,
            unix_time,
            figures,
            goals,
        })
    }
}

impl Figure {
    fn parse(value: &Value) -> io::Result<Figure> {
        let params: &Params = value["params"]
            .as_object()
            .ok_or_else(|| invalid(format!("\"params\" is missing or not an object in {value}")))?;
        let optional_text = |name: &str| match &value[name] {
            Value::Null => Ok(None),
            _ => text_field(value, name).map(Some),
        };
        let ratio = match &value["ratio"] {
            Value::Null => None,
            _ => Some(number_field(value, "ratio")?),
        };
        Ok(Figure {
            workload: text_field(value, "workload")?,
            contestant: text_field(value, "contestant")?,
            params: params_text(params),
            metric: text_field(value, "metric")?,
            median: number_field(value, "median")?,
            ratio,
            reference: optional_text("reference")?,
        })
    }
}

impl Goal {
    fn parse(value: &Value) -> io::Result<Goal> {
        Ok(Goal {
            goal: text_field(value, "goal")?,
            met: value["met"].as_bool().ok_or_else(|| {
                invalid(format!("\"met\" is missing or not a boolean in {value}"))
            })?,
            detail: text_field(value, "detail")?,
        })
    }
}

/// Every run's figures as Markdown: a paragraph saying when, how and where
/// it was measured, then a table per workload and the goals checked.
fn markdown(runs: &[Run]) -> String {
    let mut out = String::new();
    for run in runs {
        out.push_str(&format!(
            "Measured {} (UTC) with `{}`: {}.\n",
            utc_date(run.unix_time),
            program_named(&run.command),
            run.machine
        ));
        for workload in first_seen(run.figures.iter().map(|f| f.workload.as_str())) {
            let figures: Vec<&Figure> = run
                .figures
                .iter()
                .filter(|f| f.workload == workload)
                .collect();
            out.push('\n');
            out.push_str(&workload_table(workload, &figures));
        }
        if !run.goals.is_empty() {
            out.push_str("\nGoals checked:\n\n");
            for goal in &run.goals {
                let verdict = if goal.met { "met" } else { "**missed**" };
                out.push_str(&format!("- {}: {verdict} ({})\n", goal.goal, goal.detail));
            }
        }
        out.push('\n');
    }
    out
}

/// A table of one workload: a row per params and metric, a column per
/// contestant (the reference first), each cell the median with, in
/// brackets, its ratio to the reference.
fn workload_table(workload: &str, figures: &[&Figure]) -> String {
    let contestants = first_seen(figures.iter().map(|f| f.contestant.as_str()));
    let reference = figures.iter().find_map(|f| f.reference.as_deref());
    let mut out = match reference {
        Some(reference) => format!("`{workload}` (in brackets, the ratio to {reference}):\n\n"),
        None => format!("`{workload}`:\n\n"),
    };
    out.push_str(&format!(
        "| params | metric | {} |\n",
        contestants.join(" | ")
    ));
    out.push_str(&format!("|---|---|{}\n", "---:|".repeat(contestants.len())));
    let rows = first_seen(
        figures
            .iter()
            .map(|f| (f.params.as_str(), f.metric.as_str())),
    );
    for (params, metric) in rows {
        let cells: Vec<String> = contestants
            .iter()
            .map(|&contestant| {
                figures
                    .iter()
                    .find(|f| {
                        f.contestant == contestant && f.params == params && f.metric == metric
                    })
                    .map_or_else(String::new, |f| cell(f))
            })
            .collect();
        out.push_str(&format!(
            "| {params} | {metric} | {} |\n",
            cells.join(" | ")
        ));
    }
    out
}

fn cell(figure: &Figure) -> String {
    match figure.ratio {
        Some(ratio) => format!("{} ({ratio:.2}x)", format_value(figure.median)),
        None => format_value(figure.median),
    }
}

/// The distinct items in the order they first appear.
fn first_seen<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// The recorded command with the program's path shortened to its name,
/// which says nothing about the machine it was built on.
fn program_named(command: &str) -> String {
    let (program, args) = command.split_once(' ').unwrap_or((command, ""));
    let name = Path::new(program)
        .file_name()
        .map_or(program.into(), |name| name.to_string_lossy());
    format!("{name} {args}").trim_end().to_string()
}

/// `unix_time`'s day, as YYYY-MM-DD in UTC (the proleptic Gregorian
/// calendar's days from 1970-01-01, counted in 400-year eras).
fn utc_date(unix_time: u64) -> String {
    let days = (unix_time / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `readme` with what lies between its [`BEGIN`] and [`END`] lines
/// replaced by `figures` (and a line saying how they are made).
fn splice(readme: &str, figures: &str) -> io::Result<String> {
    let missing = || {
        invalid(format!(
            "it needs a line {BEGIN} and, after it, a line {END} around the figures"
        ))
    };
    let start = readme.find(BEGIN).ok_or_else(missing)? + BEGIN.len();
    let end = start + readme[start..].find(END).ok_or_else(missing)?;
    Ok(format!(
        "{}\n{GENERATED}\n\n{figures}{}",
        &readme[..start],
        &readme[end..]
    ))
}

/// Said in the README above the generated figures.
const GENERATED: &str = "<!-- Generated by `ouro-bench report --readme FILE RESULTS...` \
from the saved results: change those, not this. -->";

#[cfg(test)]
mod tests {
    use super::*;

    const RESULTS: &str = r#"{
      "command": "/somewhere/target/release/ouro-bench nop --runs 3 --out r",
      "machine": "Linux 6.18, 2 CPUs",
      "unix_time": 1796256000,
      "results": [
        {"workload": "nop", "contestant": "raw", "params": {"batch": 1}, "metric": "ops_per_sec",
         "median": 5601378.0, "min": 1, "max": 2, "runs": 3, "ratio": null, "reference": "raw"},
        {"workload": "nop", "contestant": "ouro", "params": {"batch": 1}, "metric": "ops_per_sec",
         "median": 4856316.0, "min": 1, "max": 2, "runs": 3, "ratio": 0.867, "reference": "raw"},
        {"workload": "timers", "contestant": "ouro", "params": {"in_flight": "all"},
         "metric": "ops_per_sec", "median": 12.5, "min": 1, "max": 2, "runs": 3,
         "ratio": null, "reference": null}
      ],
      "goals": [{"goal": "ouro at least 0.9x raw", "met": false, "detail": "0.87x"}]
    }"#;

    #[test]
    fn a_table_per_workload_with_medians_and_ratios() {
        let figures = markdown(&[Run::parse(RESULTS).unwrap()]);
        assert_eq!(
            figures,
            "Measured 2026-12-03 (UTC) with `ouro-bench nop --runs 3 --out r`: Linux 6.18, 2 CPUs.\n\
             \n\
             `nop` (in brackets, the ratio to raw):\n\
             \n\
             | params | metric | raw | ouro |\n\
             |---|---|---:|---:|\n\
             | batch=1 | ops_per_sec | 5,601,378 | 4,856,316 (0.87x) |\n\
             \n\
             `timers`:\n\
             \n\
             | params | metric | ouro |\n\
             |---|---|---:|\n\
             | in_flight=all | ops_per_sec | 12.50 |\n\
             \n\
             Goals checked:\n\
             \n\
             - ouro at least 0.9x raw: **missed** (0.87x)\n\
             \n"
        );
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_256_000 + 86_399), "2026-12-03");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01");
    }

    #[test]
    fn splicing_twice_changes_nothing_outside_the_markers() {
        let readme = format!("# Title\n\ntext\n\n{BEGIN}\nold figures\n{END}\n\nmore\n");
        let once = splice(&readme, "| new |\n").unwrap();
        assert!(once.starts_with("# Title\n\ntext\n\n"));
        assert!(once.ends_with(&format!("| new |\n{END}\n\nmore\n")));
        assert!(!once.contains("old figures"));
        assert_eq!(splice(&once, "| new |\n").unwrap(), once);
    }

    #[test]
    fn a_readme_without_both_markers_is_an_error() {
        assert!(splice("no markers", "x").is_err());
        assert!(splice(&format!("{END}\n{BEGIN}\n"), "x").is_err());
    }

    #[test]
    fn a_malformed_results_file_is_an_error() {
        assert!(Run::parse("[]").is_err());
        assert!(Run::parse(&RESULTS.replace("\"median\": 12.5", "\"median\": \"x\"")).is_err());
    }
}
