//! The engine's layering, checked from its source: every `crate::…` path names the top-level
//! module it depends on, and no two top-level modules may depend on each other, directly or
//! through others. A module and its own submodules may use each other freely; a cycle wider than
//! that fails this test, naming the modules in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its files name through `crate::`.
fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("a file name");
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let deps = graph.entry(top.clone()).or_default();
        for name in crate_paths(&text) {
            if name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The first segment after every `crate::` in code (comments skipped), including the members of
/// a grouped `use crate::{a::X, b::Y}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let preceded = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        rest = &rest[i + "crate::".len()..];
        if preceded {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in split_top_level(&group[..end]) {
                names.insert(ident(item.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every module reachable from `from` (not counting `from` itself unless a cycle returns to it).
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = graph
        .get(from)
        .into_iter()
        .flatten()
        .map(|s| s.as_str())
        .collect();
    while let Some(m) = stack.pop() {
        if seen.insert(m.to_string()) {
            stack.extend(graph.get(m).into_iter().flatten().map(|s| s.as_str()));
        }
    }
    seen
}

/// The groups of modules that depend on each other, each sorted, smallest name first.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    let reach: BTreeMap<_, _> = graph
        .keys()
        .map(|m| (m.clone(), reachable(graph, m)))
        .collect();
    let mut out = BTreeSet::new();
    for (m, r) in &reach {
        if r.contains(m) {
            let group: Vec<String> = reach
                .iter()
                .filter(|(o, ro)| r.contains(*o) && ro.contains(m))
                .map(|(o, _)| o.clone())
                .collect();
            out.insert(group);
        }
    }
    out
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = dependencies(&src);
    let found = cycles(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|group| {
            let edges: Vec<String> = group
                .iter()
                .flat_map(|m| {
                    graph[m]
                        .iter()
                        .filter(|d| group.contains(d))
                        .map(move |d| format!("{m} -> {d}"))
                })
                .collect();
            format!("[{}]: {}", group.join(", "), edges.join("; "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between top-level modules of actors/src:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert(
        "a".to_string(),
        crate_paths("use crate::{b::X, c::{Y, Z}};"),
    );
    graph.insert("b".to_string(), crate_paths("fn f() { crate::a::g() }"));
    graph.insert(
        "c".to_string(),
        crate_paths("// crate::a::h is only mentioned"),
    );
    assert_eq!(graph["a"], ["b", "c"].map(String::from).into());
    assert!(graph["c"].is_empty());
    let found = cycles(&graph);
    assert_eq!(found, [vec!["a".to_string(), "b".to_string()]].into());
}
