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
fn nop_reports_both_contestants_for_each_batch() {
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
    let expected = [("raw", 1), ("ouro", 1), ("raw", 32), ("ouro", 32)];
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
    let output = ouro_bench(&["nop", "--ops", "300", "--batch", "8", "--runs", "1"]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).expect("UTF-8 output");
    let ouro_row = table
        .lines()
        .find(|line| line.contains(" ouro "))
        .expect("a row for ouro");
    assert!(ouro_row.ends_with("x raw"), "{table}");
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
    let output = ouro_bench(&["nop", "--only", "tokio", "--ops", "10"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no contestant named tokio"));
}

#[test]
fn echo_reports_every_contestant_and_both_metrics() {
    let output = ouro_bench(&[
        "echo", "--conns", "2", "--size", "16", "--secs", "0.05", "--runs", "1", "--json",
    ]);
    let lines = json_lines(&output);
    let mut got: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            assert_eq!(line["workload"], "echo");
            assert_eq!(line["params"], serde_json::json!({"conns": 2, "size": 16}));
            let value = line["value"].as_f64().expect("a number");
            assert!(value.is_finite() && value > 0.0, "{line}");
            (
                line["contestant"].as_str().expect("a name").to_string(),
                line["metric"].as_str().expect("a metric").to_string(),
            )
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, String)> = ["ouro-poll", "ouro-uring", "tokio"]
        .iter()
        .flat_map(|c| {
            ["rps", "server_cpu_us_per_req"]
                .iter()
                .map(move |m| (c.to_string(), m.to_string()))
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn msg_reports_every_contestant_for_both_patterns() {
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
