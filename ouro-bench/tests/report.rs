//! `ouro-bench report`: the README's figures are generated from saved
//! results, and generating them again changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json")
}

fn report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ouro-bench"))
        .arg("report")
        .args(args)
        .output()
        .expect("ouro-bench runs")
}

fn succeeded(output: &Output) -> bool {
    if !output.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    }
    output.status.success()
}

/// A README with typed figures between the markers and text around them.
fn readme_in(dir: &Path) -> PathBuf {
    let readme = dir.join("README.md");
    let text = "# Bench\n\nBefore.\n\n<!-- figures:begin -->\n| typed | 1 |\n<!-- figures:end -->\n\nAfter.\n";
    std::fs::write(&readme, text).unwrap();
    readme
}

#[test]
fn report_writes_the_fixture_as_a_table_between_the_markers() {
    let dir = tempfile::tempdir().unwrap();
    let readme = readme_in(dir.path());
    let fixture = fixture();
    assert!(succeeded(&report(&[
        "--readme",
        readme.to_str().unwrap(),
        fixture.to_str().unwrap(),
    ])));
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(text.starts_with("# Bench\n\nBefore.\n\n<!-- figures:begin -->\n"));
    assert!(text.ends_with("<!-- figures:end -->\n\nAfter.\n"));
    assert!(!text.contains("typed"));
    for line in [
        "Measured 2026-12-03 (UTC) with `ouro-bench echo --conns 16 --size 64 --runs 3 --out fixture`: \
         Linux 6.18, 2 CPUs, io_uring; median of 3 runs; servers on CPU 0, clients on CPU 1.",
        "`echo` (in brackets, the ratio to tokio):",
        "| params | metric | tokio | ouro-uring | raw |",
        "|---|---|---:|---:|---:|",
        "| conns=16 size=64 | rps | 187,884 | 187,656 (1.00x) | 187,881 (1.00x) |",
        "| conns=16 size=64 | server_cpu_us_per_req | 4.72 | 4.57 (0.97x) |  |",
        "- ouro-uring's server CPU per echo request at most 0.95x tokio's: **missed** (0.97x at 16 x 64 B)",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
}

#[test]
fn reporting_again_leaves_the_readme_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let readme = readme_in(dir.path());
    let args = [
        "--readme",
        readme.to_str().unwrap(),
        fixture().to_str().unwrap(),
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(!succeeded(&report(&[&args[..], &["--check"]].concat())));
    assert!(succeeded(&report(&args)));
    let once = std::fs::read_to_string(&readme).unwrap();
    assert!(succeeded(&report(&args)));
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), once);
    assert!(succeeded(&report(&[&args[..], &["--check"]].concat())));
}

#[test]
fn a_directory_stands_for_the_results_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("echo");
    std::fs::create_dir(&nested).unwrap();
    std::fs::copy(fixture(), nested.join("results.json")).unwrap();
    let from_dir = report(&[dir.path().to_str().unwrap()]);
    let from_file = report(&[fixture().to_str().unwrap()]);
    assert!(succeeded(&from_dir) && succeeded(&from_file));
    assert_eq!(from_dir.stdout, from_file.stdout);
}

#[test]
fn a_readme_without_markers_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# No markers\n").unwrap();
    let output = report(&[
        "--readme",
        readme.to_str().unwrap(),
        fixture().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("figures:begin"));
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "# No markers\n");
}

#[test]
fn a_missing_results_file_is_a_clear_error() {
    let output = report(&["/nonexistent/results.json"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/results.json"));
}
