//! The order crate reads in one hop: its modules depend on each other one way only (no
//! cycle), and the generic saga engine depends on nothing of the order service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its code names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).unwrap() {
                files.push((name.clone(), inner.unwrap().path()));
            }
        } else if name != "lib" {
            files.push((name, path));
        }
    }
    for (module, path) in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let names = graph.entry(module.clone()).or_default();
        for (index, _) in text.match_indices("crate::") {
            let rest = &text[index + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `use crate::{a, b}` names several.
            if target.is_empty() && rest.starts_with('{') {
                let group = &rest[1..rest.find('}').unwrap()];
                for item in group.split(',') {
                    let item = item.trim().split("::").next().unwrap().trim();
                    if !item.is_empty() && item != module {
                        names.insert(item.to_owned());
                    }
                }
            } else if !target.is_empty() && target != module {
                names.insert(target);
            }
        }
    }
    graph
}

/// A cycle through `from`, if there is one.
fn cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|module| module == from) {
        let mut found = path[start..].to_vec();
        found.push(from.to_owned());
        return Some(found);
    }
    if !done.insert(from.to_owned()) {
        return None;
    }
    path.push(from.to_owned());
    for next in graph.get(from).into_iter().flatten() {
        if let Some(found) = cycle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    None
}

#[test]
fn the_order_crates_modules_depend_one_way() {
    let graph = module_graph();
    // The graph is read from the sources: the modules of the restructuring are there.
    for module in [
        "error",
        "events",
        "settings",
        "startup",
        "http",
        "grpc",
        "consumers",
    ] {
        assert!(graph.contains_key(module), "no module `{module}`");
    }
    assert!(graph["lifecycle"].contains("events"), "{graph:?}");
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let mut path = Vec::new();
        if let Some(found) = cycle(&graph, module, &mut path, &mut done) {
            panic!(
                "modules import each other in a circle: {}",
                found.join(" → ")
            );
        }
    }
    assert!(
        graph["saga"].is_empty(),
        "the saga engine names order modules: {:?}",
        graph["saga"]
    );
}

#[test]
fn a_circle_is_found() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        cycle(&graph, "a", &mut Vec::new(), &mut BTreeSet::new()),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
