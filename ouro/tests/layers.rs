//! The library's shape. Its modules form layers, and imports point down
//! only: a module may use the modules of lower layers, and those listed
//! before it in its own layer. These tests read `src/` and fail on any
//! other import, on a top-level module missing from the table (a new
//! module must be placed in it), and on a source file over 700 lines (split
//! it by concern) in the library, its examples and tests, or the benchmark
//! program. `ARCHITECTURE.md` draws the same picture. One more test keeps
//! `Ring`'s rustdoc page in its reading order (it follows `ring/mod.rs`).
//! They also check that the ring crates keep clippy's lint against the OS
//! clock and OS randomness on, and that only the real backends' clock and
//! random sources step around it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first. This table is the one statement of the
/// layering; `ARCHITECTURE.md` draws it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "conns", "fd_table", "error", "buffers", "fd", "time", "net", "fs", "task", "sync",
            "syscall",
        ],
    ),
    ("mailbox", &["mailbox"]),
    ("operations and outcomes", &["op", "completion"]),
    ("backends", &["backend"]),
    ("the ring", &["ring"]),
    ("messages", &["message"]),
    (
        "helpers on the ring",
        &["write_queue", "signal", "pipe", "send_file"],
    ),
];

/// The most lines a source file may have.
const MAX_LINES: usize = 700;

/// Where `module` sits: (layer, position within the layer).
fn rank(module: &str) -> Option<(usize, usize)> {
    LAYERS.iter().enumerate().find_map(|(layer, (_, modules))| {
        let position = modules.iter().position(|m| *m == module)?;
        Some((layer, position))
    })
}

/// Whether `from` may import `to`.
fn may_import(from: &str, to: &str) -> bool {
    match (rank(from), rank(to)) {
        (Some(from), Some(to)) => to < from,
        _ => false,
    }
}

/// The top-level modules `lib.rs` declares.
fn declared_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.to_string())
        })
        .collect()
}

/// The module path of a file under `src/`: `ring/mod.rs` and `ring.rs` are
/// `["ring"]`, `ring/ops.rs` is `["ring", "ops"]`, `lib.rs` is `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.strip_suffix(".rs").unwrap_or(&file);
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier at the start of `text`.
fn leading_ident(text: &str) -> &str {
    let end = text.find(|c| !is_ident_char(c)).unwrap_or(text.len());
    &text[..end]
}

/// The first segment of each path in a `{a::b, c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && is_ident_char(c) => {
                heads.push(leading_ident(&group[i..]).to_string());
                start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules a line of code names through `crate::` or
/// through enough `super::`s to reach the crate root from `module`.
fn named_modules(line: &str, module: &[String]) -> Vec<String> {
    let mut named = Vec::new();
    let mut rest = line;
    while let Some(at) = [rest.find("crate::"), rest.find("super::")]
        .into_iter()
        .flatten()
        .min()
    {
        let before = rest[..at].chars().next_back();
        let is_path_start = !before.is_some_and(|c| is_ident_char(c) || c == '$' || c == ':');
        let mut tail = &rest[at..];
        let from_root = match tail.strip_prefix("crate::") {
            Some(after) => {
                tail = after;
                true
            }
            None => {
                let mut ups = 0;
                while let Some(next) = tail.strip_prefix("super::") {
                    tail = next;
                    ups += 1;
                }
                ups == module.len()
            }
        };
        if is_path_start && from_root {
            match tail.strip_prefix('{') {
                Some(group) => named.extend(group_heads(group)),
                None => named.push(leading_ident(tail).to_string()),
            }
        }
        rest = &rest[at + 1..];
    }
    named
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("list a source directory") {
        let path = entry.expect("list a source directory").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every import in `src/` that points up or sideways: (file, line, module).
fn violations(src: &Path, modules: &BTreeSet<String>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src/");
        let module = module_path(relative);
        let Some(top) = module.first() else {
            continue; // lib.rs sits above every layer
        };
        let text = fs::read_to_string(&file).expect("read a source file");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue; // docs may link anywhere
            }
            for named in named_modules(line, &module) {
                if modules.contains(&named) && named != *top && !may_import(top, &named) {
                    found.push(format!(
                        "{}:{}: `{top}` imports `{named}`",
                        relative.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let unplaced: Vec<String> = declared_modules(&lib)
        .into_iter()
        .filter(|m| rank(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS in tests/layers.rs: {unplaced:?}"
    );
}

/// `Ring`'s methods by family, in the order its rustdoc page shows them
/// (the order of the `mod` lines in `ring/mod.rs`), each with methods its
/// file must hold.
const RING_PAGE: &[(&str, &[&str])] = &[
    ("construct", &["new", "mock"]),
    ("run", &["run", "stop"]),
    ("net_ops", &["socket", "accept", "send", "recv", "send_to"]),
    ("multishot", &["buffer_group", "recv_multishot"]),
    ("file_ops", &["open", "read", "write", "splice", "close"]),
    (
        "fs_ops",
        &["stat", "ftruncate", "unlink", "fadvise", "madvise"],
    ),
    ("files", &["register_fd", "take_fd"]),
    ("timer_ops", &["noop", "timer", "cancel", "set_deadline"]),
    ("messages", &["msg_ring"]),
    ("thread", &["spawn_thread"]),
];

#[test]
fn rings_rustdoc_page_reads_by_family() {
    let ring = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ring");
    let declared = declared_modules(&fs::read_to_string(ring.join("mod.rs")).unwrap());
    let positions: Vec<usize> = RING_PAGE
        .iter()
        .map(|(module, _)| {
            let at = declared.iter().position(|m| m == module);
            at.unwrap_or_else(|| panic!("ring/mod.rs declares no `mod {module};`"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "ring/mod.rs must declare {:?} in this order, not {declared:?}",
        RING_PAGE.iter().map(|(m, _)| *m).collect::<Vec<_>>()
    );
    for (module, methods) in RING_PAGE {
        let text = fs::read_to_string(ring.join(format!("{module}.rs"))).unwrap();
        for method in *methods {
            let signature = format!("    pub fn {method}");
            let found = text.lines().any(|line| {
                line.strip_prefix(&signature)
                    .is_some_and(|rest| !rest.starts_with(is_ident_char))
            });
            assert!(found, "Ring::{method} belongs in ring/{module}.rs");
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let modules = declared_modules(&lib).into_iter().collect();
    let found = violations(&src, &modules);
    assert!(
        found.is_empty(),
        "imports against the layers (see LAYERS in tests/layers.rs):\n{}",
        found.join("\n")
    );
}

/// The directories, relative to the workspace, whose Rust files are held
/// to [`MAX_LINES`]: the library, its examples and tests, and the
/// benchmark program.
const SIZE_CHECKED: &[&str] = &["ouro/src", "ouro/examples", "ouro/tests", "ouro-bench/src"];

#[test]
fn no_source_file_is_over_700_lines() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ouro sits in the workspace");
    let mut files = Vec::new();
    for dir in SIZE_CHECKED {
        rust_files(&workspace.join(dir), &mut files);
    }
    files.sort();
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = fs::read_to_string(file)
                .expect("read a source file")
                .lines()
                .count();
            let relative = file.strip_prefix(workspace).expect("under the workspace");
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", relative.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines (split them by concern): {long:?}"
    );
}

#[test]
fn the_check_sees_upward_and_grouped_paths() {
    let op = ["op".to_string()];
    let nested = ["ring".to_string(), "ops".to_string()];
    assert_eq!(named_modules("use crate::ring::Ring;", &op), ["ring"]);
    assert_eq!(
        named_modules("use crate::{message::Envelope, fd};", &op),
        ["message", "fd"]
    );
    assert_eq!(
        named_modules("    let x = crate::thread::f();", &op),
        ["thread"]
    );
    assert_eq!(named_modules("use super::super::op::Op;", &nested), ["op"]);
    assert!(named_modules("use super::Ring;", &nested).is_empty());
    assert!(named_modules("$crate::Ctx::new(f)", &op).is_empty());
    assert!(may_import("ring", "op"));
    assert!(!may_import("op", "ring"));
    assert!(!may_import("op", "op_unknown"));
    assert!(may_import("completion", "op"));
    assert!(!may_import("op", "completion"));
}

/// The crates whose code runs on a ring, and so under the simulator.
const RING_CRATES: &[&str] = &["ouro", "ouro-net", "ouro-tls"];

/// The only library files that may read the OS clock or its randomness:
/// the real backends' clock source and their random source (a CSPRNG).
const OS_SOURCES: &[&str] = &["ouro/src/backend/random.rs", "ouro/src/time.rs"];

#[test]
fn only_the_clock_and_random_sources_escape_the_clock_and_randomness_lint() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ouro sits in the workspace");
    let config = fs::read_to_string(workspace.join("clippy.toml")).expect("read clippy.toml");
    for method in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "getrandom::u32",
        "fastrand::u64",
    ] {
        assert!(
            config.contains(&format!("\"{method}\"")),
            "clippy.toml must disallow {method}"
        );
    }
    let mut files = Vec::new();
    for krate in RING_CRATES {
        let lib =
            fs::read_to_string(workspace.join(krate).join("src/lib.rs")).expect("read lib.rs");
        assert!(
            lib.contains("#![cfg_attr(not(test), deny(clippy::disallowed_methods))]"),
            "{krate}/src/lib.rs must switch the lint on"
        );
        rust_files(&workspace.join(krate).join("src"), &mut files);
    }
    files.sort();
    let allowing: Vec<String> = files
        .iter()
        .filter(|file| {
            fs::read_to_string(file)
                .expect("read a source file")
                .contains("allow(clippy::disallowed_methods)")
        })
        .map(|file| {
            let relative = file.strip_prefix(workspace).expect("under the workspace");
            relative.display().to_string()
        })
        .collect();
    assert_eq!(
        allowing, OS_SOURCES,
        "files allowing the OS clock or randomness"
    );
}
