//! The layers stay layered: the reactor and the timer wheel never reach up
//! into the event loop (DESIGN.md, "Hard boundaries keep each piece testable
//! alone"). A source-level check, so that a stray `use crate::event_loop`
//! fails CI instead of slowly eroding the architecture.

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::` path a file mentions, outside comments.
fn crate_paths(src: &str) -> Vec<String> {
    src.lines()
        .map(|l| l.split("//").next().unwrap())
        .flat_map(|l| l.match_indices("crate::").map(move |(i, _)| &l[i..]))
        .map(|p| {
            p.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn assert_only_uses(dir: &str, allowed: &[&str]) {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    assert!(!files.is_empty(), "{dir} has no sources");
    for f in files {
        let src = fs::read_to_string(&f).unwrap();
        for p in crate_paths(&src) {
            assert!(
                allowed.iter().any(|a| p.starts_with(a)),
                "{} reaches up to `{p}`: only {allowed:?} allowed",
                f.display()
            );
        }
        assert!(
            !src.contains("super::super"),
            "{} reaches out through super::super",
            f.display()
        );
    }
}

#[test]
fn the_reactor_knows_nothing_of_the_loop() {
    assert_only_uses("src/reactor", &[]);
}

#[test]
fn the_time_module_knows_nothing_of_the_loop() {
    assert_only_uses("src/time", &["crate::time"]);
}

#[test]
fn the_wheel_is_pure() {
    let src = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/time/wheel.rs"))
        .unwrap();
    for banned in [
        "unsafe",
        "Instant",
        "SystemTime",
        "Waker",
        "mio::",
        "std::thread",
    ] {
        let code: String = src
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!code.contains(banned), "wheel.rs uses `{banned}`");
    }
}

#[test]
fn the_check_itself_sees_crate_paths() {
    // Guards the guard: the parser must find what it is looking for.
    assert_eq!(
        crate_paths("use crate::event_loop::Handle; // crate::ignored"),
        ["crate::event_loop::Handle"]
    );
}
