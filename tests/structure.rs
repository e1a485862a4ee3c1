//! The crate's structure, checked from its sources: which top-level module
//! uses which (`crate::<module>` in code, comments left out), with no cycle
//! among them; protocol code (`resp`, `session`) uses nothing of Kafka, and
//! Kafka code (`kafka`) nothing of sockets, RESP or sessions. Needs no stack:
//! `cargo test --test structure`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// A file's code without its comments (line comments and doc comments; the
/// project has no block comments in code).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            // `//` inside a string literal (a URL) keeps the line whole.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`src/kafka/consumer.rs` → `kafka`);
/// None for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The names following `crate::` in `code`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // Not `databus_crate::` or the like.
            code[..*at]
                .chars()
                .last()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

struct Crate {
    graph: Graph,
    /// Per module, all its code, to look for outside crates too.
    code: BTreeMap<String, String>,
}

fn this_crate() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut all_code: BTreeMap<String, String> = BTreeMap::new();
    for file in rust_files(&src) {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let code = code(&file);
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(crate_paths(&code).into_iter().filter(|m| *m != module));
        all_code.entry(module).or_default().push_str(&code);
    }
    Crate {
        graph,
        code: all_code,
    }
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            g.entry(to.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        crate_paths("use crate::kafka::x; crate::errors::A; my_crate::no"),
        BTreeSet::from(["kafka".to_string(), "errors".to_string()])
    );
}

#[test]
fn no_module_cycle() {
    let krate = this_crate();
    assert!(krate.graph.len() > 10, "{:?}", krate.graph);
    if let Some(cycle) = find_cycle(&krate.graph) {
        panic!(
            "modules use each other in a cycle: {}\n{:#?}",
            cycle.join(" -> "),
            krate.graph
        );
    }
}

/// `module` uses none of `modules` of this crate and none of `outside` paths.
fn assert_uses_none(krate: &Crate, module: &str, modules: &[&str], outside: &[&str]) {
    let uses = &krate.graph[module];
    for m in modules {
        assert!(!uses.contains(*m), "{module} uses crate::{m}");
    }
    for path in outside {
        assert!(!krate.code[module].contains(path), "{module} uses {path}");
    }
}

const SOCKETS: &[&str] = &[
    "glommio::net",
    "std::net::Tcp",
    "tokio::net",
    "socket2",
    "rustls",
];

#[test]
fn protocol_code_knows_nothing_of_kafka() {
    let krate = this_crate();
    let kafka = ["kafka", "wiring"];
    assert_uses_none(&krate, "resp", &kafka, &["rdkafka"]);
    assert_uses_none(&krate, "session", &kafka, &["rdkafka"]);
    // Nor of sockets: the connection (server) owns those.
    assert_uses_none(&krate, "session", &["server"], SOCKETS);
    // The parser stands alone: it uses the crate for nothing.
    assert_eq!(krate.graph["resp"], BTreeSet::new());
}

#[test]
fn kafka_code_knows_nothing_of_sockets_or_resp() {
    let krate = this_crate();
    assert_uses_none(
        &krate,
        "kafka",
        &["resp", "session", "server", "clients", "wiring", "errors"],
        SOCKETS,
    );
}
