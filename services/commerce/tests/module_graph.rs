//! Every crate reads in one hop: its modules depend on each other one way only (no cycle),
//! every service names its edges by job in the same files, and the generic saga engine
//! (`services/saga`) depends on no service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, with the top-level module it belongs to.
fn sources(src: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, into);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                into.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let top = path.strip_prefix(src).unwrap().components().next().unwrap();
            let top = Path::new(top.as_os_str()).file_stem().unwrap();
            let top = top.to_string_lossy().into_owned();
            (top != "lib" && top != "main").then_some((top, path))
        })
        .collect()
}

/// Top-level module → the top-level modules its code names as `crate::<module>`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in sources(src) {
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

/// Every crate's `src` in the workspace.
fn crates() -> Vec<PathBuf> {
    let root = workspace();
    let mut found: Vec<PathBuf> = ["services", "crates"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    found.push(root.join("operator/src"));
    found.sort();
    found
}

#[test]
fn no_crates_modules_import_each_other_in_a_circle() {
    let crates = crates();
    assert!(crates.len() >= 15, "{crates:?}");
    for src in crates {
        let graph = module_graph(&src);
        let mut done = BTreeSet::new();
        for module in graph.keys() {
            if let Some(found) = cycle(&graph, module, &mut Vec::new(), &mut done) {
                panic!(
                    "{}: modules import each other in a circle: {}",
                    src.display(),
                    found.join(" → ")
                );
            }
        }
    }
}

#[test]
fn every_service_names_its_edges_by_job() {
    let services = workspace().join("services");
    // The crates that run as a service: they have a `ServiceDefinition`.
    let mut checked = 0;
    for entry in std::fs::read_dir(&services).unwrap() {
        let src = entry.unwrap().path().join("src");
        let Ok(lib) = std::fs::read_to_string(src.join("lib.rs")) else {
            continue;
        };
        if !lib.contains("ServiceDefinition {") {
            continue;
        }
        checked += 1;
        let graph = module_graph(&src);
        for module in ["settings", "startup", "http", "service", "domain"] {
            assert!(
                graph.contains_key(module),
                "{}: no `{module}` module",
                src.display()
            );
        }
        assert!(
            !graph.contains_key("handler"),
            "{}: edges belong in settings / startup / http / grpc / consumers, not `handler`",
            src.display()
        );
        assert!(
            lib.contains("startup::start"),
            "{}: the definition starts through `startup`",
            src.display()
        );
    }
    assert_eq!(checked, 10, "ten services define themselves");
}

#[test]
fn the_order_crates_sagas_depend_on_events_and_the_saga_engine_on_no_service() {
    let graph = module_graph(&workspace().join("services/order/src"));
    for module in ["error", "events", "engine", "context", "consumers", "grpc"] {
        assert!(graph.contains_key(module), "no module `{module}`");
    }
    assert!(graph["lifecycle"].contains("events"), "{graph:?}");
    // The generic engine is a crate of its own that depends on no service crate.
    let saga = workspace().join("services/saga");
    let manifest = std::fs::read_to_string(saga.join("Cargo.toml")).unwrap();
    let dependencies = &manifest[manifest.find("[dependencies]").unwrap()..];
    assert!(
        !dependencies.contains("commerce-"),
        "services/saga depends on a commerce crate: {dependencies}"
    );
    for (_, path) in sources(&saga.join("src")) {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("commerce_order"),
            "{} names the order service",
            path.display()
        );
    }
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
