//! The program as a user runs it: tiny workloads, checked for shape and
//! completeness (never for speed: timing belongs to the benchmark itself).

use std::process::{Command, Output};

fn ouro_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ouro-bench"))
        .args(args)
        // `nop` compares ouro with a raw io_uring loop and refuses to run
        // when OURO_BACKEND (set for the test pass on the readiness
        // backend) makes ouro's ring something else.
        .env_remove("OURO_BACKEND")
        .output()
        .expect("ouro-bench runs")
}

// ouro's test helpers, shared by every test binary of the workspace.
#[path = "../../ouro/tests/common/mod.rs"]
mod common;

/// Whether io_uring cannot be set up on this host (the kernel lacks it, or
/// a seccomp filter forbids it, as Docker's default profile does), saying
/// so: the workloads that measure it then cannot run. Any other setup
/// failure fails the test.
fn skipped_without_io_uring() -> bool {
    common::backends::skipped(ouro::BackendKind::Uring)
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(
        output.status.success(),
        "ouro-bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON object"))
        .collect()
}

#[test]
fn nop_reports_every_contestant_for_each_batch() {
    if skipped_without_io_uring() {
        return;
    }
    let output = ouro_bench(&[
        "nop", "--ops", "600", "--batch", "1,32", "--runs", "2", "--json",
    ]);
    let lines = json_lines(&output);
    let got: Vec<(String, u64)> = lines
        .iter()
        .map(|line| {
            assert_eq!(line["workload"], "nop");
            assert_eq!(line["metric"], "ops_per_sec");
            let value = line["value"].as_f64().expect("a number");
            assert!(value.is_finite() && value > 0.0, "{line}");
            let contestant = line["contestant"].as_str().expect("a name").to_string();
            (
                contestant,
                line["params"]["batch"].as_u64().expect("a batch"),
            )
        })
        .collect();
    let expected = [
        ("raw", 1),
        ("floor-inline", 1),
        ("floor", 1),
        ("ouro", 1),
        ("raw", 32),
        ("floor-inline", 32),
        ("floor", 32),
        ("ouro", 32),
    ];
    let expected: Vec<(String, u64)> = expected.iter().map(|&(c, b)| (c.to_string(), b)).collect();
    assert_eq!(got, expected);
}

#[test]
fn timers_reports_each_in_flight_choice() {
    let output = ouro_bench(&[
        "timers",
        "--count",
        "500",
        "--in-flight",
        "1,all",
        "--runs",
        "1",
        "--json",
    ]);
    let lines = json_lines(&output);
    let params: Vec<&serde_json::Value> = lines
        .iter()
        .map(|line| &line["params"]["in_flight"])
        .collect();
    assert_eq!(params, [&serde_json::json!(1), &serde_json::json!("all")]);
    assert!(lines
        .iter()
        .all(|line| line["contestant"] == "ouro" && line["value"].as_f64() > Some(0.0)));
}

#[test]
fn the_table_shows_the_ratio_against_raw() {
    if skipped_without_io_uring() {
        return;
    }
    let output = ouro_bench(&["nop", "--ops", "300", "--batch", "8", "--runs", "1"]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).expect("UTF-8 output");
    for contestant in [" ouro ", " floor ", " floor-inline "] {
        let row = table
            .lines()
            .find(|line| line.contains(contestant))
            .expect("a row for each contestant but raw");
        assert!(row.ends_with("x raw"), "{table}");
    }
}

#[test]
fn unknown_workloads_and_options_are_clear_errors() {
    for args in [
        &["nop-nop"][..],
        &["nop", "--batches", "2"],
        &["timers", "--in-flight", "0"],
    ] {
        let output = ouro_bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    }
    let output = ouro_bench(&["timers", "--only", "tokio", "--count", "10"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no contestant named tokio"));
}

/// (contestant, metric) of every line, sorted, checking each line's
/// workload and params and that its value is a positive number.
fn contestant_metrics(
    lines: &[serde_json::Value],
    workload: &str,
    params: serde_json::Value,
) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            assert_eq!(line["workload"], workload);
            assert_eq!(line["params"], params);
            let value = line["value"].as_f64().expect("a number");
            assert!(value.is_finite() && value > 0.0, "{line}");
            (
                line["contestant"].as_str().expect("a name").to_string(),
                line["metric"].as_str().expect("a metric").to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

fn every_pair(contestants: &[&str], metrics: &[&str]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = contestants
        .iter()
        .flat_map(|c| metrics.iter().map(move |m| (c.to_string(), m.to_string())))
        .collect();
    pairs.sort();
    pairs
}

const SERVER_METRICS: [&str; 5] = ["rps", "server_cpu_us_per_req", "p50_us", "p99_us", "rss_mb"];

#[test]
fn echo_reports_every_contestant_and_metric() {
    if skipped_without_io_uring() {
        return;
    }
    let output = ouro_bench(&[
        "echo", "--conns", "2", "--size", "16", "--secs", "0.05", "--runs", "1", "--json",
    ]);
    let got = contestant_metrics(
        &json_lines(&output),
        "echo",
        serde_json::json!({"conns": 2, "size": 16}),
    );
    let contestants = ["ouro-uring", "ouro-poll", "raw", "tokio", "monoio"];
    assert_eq!(got, every_pair(&contestants, &SERVER_METRICS));
}

#[test]
#[ignore = "needs wrk (apt-get install wrk; .ci/run installs it)"]
fn http_runs_wrk_against_each_server() {
    if skipped_without_io_uring() {
        return;
    }
    let output = ouro_bench(&[
        "http",
        "--conns",
        "4",
        "--secs",
        "1",
        "--runs",
        "1",
        "--json",
        "--only",
        "ouro-poll,monoio",
    ]);
    let got = contestant_metrics(
        &json_lines(&output),
        "http",
        serde_json::json!({"conns": 4}),
    );
    assert_eq!(got, every_pair(&["ouro-poll", "monoio"], &SERVER_METRICS));
}

#[test]
fn idle_reports_each_servers_memory() {
    if skipped_without_io_uring() {
        return;
    }
    let output = ouro_bench(&["idle", "--conns", "300", "--runs", "1", "--json"]);
    let got = contestant_metrics(
        &json_lines(&output),
        "idle",
        serde_json::json!({"conns": 300}),
    );
    let contestants = ["ouro-uring", "ouro-poll", "raw", "tokio", "monoio"];
    assert_eq!(
        got,
        every_pair(&contestants, &["rss_mb", "rss_kb_per_conn"])
    );
}

#[test]
#[ignore = "needs wrk (apt-get install wrk; .ci/run installs it)"]
fn all_writes_the_table_json_and_chart_with_the_goals() {
    if skipped_without_io_uring() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let output = ouro_bench(&[
        "all",
        "--only",
        "ouro-uring,tokio",
        "--secs",
        "0.05",
        "--idle-conns",
        "200",
        "--runs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in ["echo ", "http ", "idle ", "Goals:"] {
        assert!(table.contains(row), "no {row:?} in\n{table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let results = json["results"].as_array().expect("results");
    for workload in ["echo", "http", "idle"] {
        assert!(
            results
                .iter()
                .any(|r| r["workload"] == workload && r["contestant"] == "ouro-uring"),
            "no {workload} result"
        );
    }
    // Echo at 16 and 128 connections, two sizes, against tokio; and the
    // idle memory (under 100 MB, below tokio's).
    let goals = json["goals"].as_array().expect("goals");
    assert_eq!(goals.len(), 4 + 2, "{goals:?}");
    assert!(goals.iter().all(|g| g["met"].is_boolean()));
    let chart = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("ouro-uring"),
        "{chart}"
    );
}

#[test]
fn msg_reports_every_contestant_for_both_patterns() {
    if skipped_without_io_uring() {
        return;
    }
    let output = ouro_bench(&[
        "msg",
        "--roundtrips",
        "200",
        "--msgs",
        "2000",
        "--runs",
        "1",
        "--json",
    ]);
    let lines = json_lines(&output);
    let mut got: Vec<(String, String, String)> = lines
        .iter()
        .map(|line| {
            assert_eq!(line["workload"], "msg");
            let value = line["value"].as_f64().expect("a number");
            assert!(value.is_finite() && value > 0.0, "{line}");
            (
                line["params"]["pattern"]
                    .as_str()
                    .expect("a pattern")
                    .to_string(),
                line["contestant"].as_str().expect("a name").to_string(),
                line["metric"].as_str().expect("a metric").to_string(),
            )
        })
        .collect();
    got.sort();
    let contestants = ["crossbeam", "eventfd", "ouro-mailbox", "ouro-msgring"];
    let mut expected: Vec<(String, String, String)> = Vec::new();
    for contestant in contestants {
        expected.push(("one-way".into(), contestant.into(), "msgs_per_sec".into()));
        for metric in ["p50_ns", "roundtrips_per_sec"] {
            expected.push(("ping-pong".into(), contestant.into(), metric.into()));
        }
    }
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn hostile_without_the_example_servers_says_how_to_build_them() {
    let output = ouro_bench(&["hostile", "--examples", "/nonexistent/examples"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/examples/echo not found")
            && stderr.contains("cargo build --release -p ouro --examples"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs dnsmasq, root and unshare"]
fn dns_reports_every_contestant_and_leaves_resolv_conf_alone() {
    let before = std::fs::read("/etc/resolv.conf").ok();
    let output = ouro_bench(&[
        "dns",
        "--lookups",
        "300",
        "--runs",
        "1",
        "--rate",
        "2000",
        "--json",
    ]);
    let lines = json_lines(&output);
    let mut got: Vec<(String, String, String)> = lines
        .iter()
        .map(|line| {
            assert_eq!(line["workload"], "dns");
            assert_eq!(line["params"]["in_flight"], 16);
            let pattern = line["params"]["pattern"].as_str().expect("a pattern");
            if pattern == "paced" {
                assert_eq!(line["params"]["rate"], 2000);
            }
            let value = line["value"].as_f64().expect("a number");
            assert!(value.is_finite() && value > 0.0, "{line}");
            (
                pattern.to_string(),
                line["contestant"].as_str().expect("a name").to_string(),
                line["metric"].as_str().expect("a metric").to_string(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, String, String)> = Vec::new();
    for pattern in ["closed", "paced"] {
        for contestant in ["getaddrinfo", "hickory", "ouro"] {
            for metric in ["cpu_us_per_lookup", "lookups_per_sec", "p50_us", "p99_us"] {
                // Under pacing every contestant gets the same rate.
                if pattern == "closed" || metric != "lookups_per_sec" {
                    expected.push((pattern.into(), contestant.into(), metric.into()));
                }
            }
        }
    }
    assert_eq!(got, expected);
    assert_eq!(std::fs::read("/etc/resolv.conf").ok(), before);
}
