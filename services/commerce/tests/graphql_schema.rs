//! The subgraphs' SDL in `graphql/subgraphs/` is what the services serve: the supergraph
//! is composed from those files (`graphql/compose.mjs`, checked in `make test`), so they
//! must not drift from the code. `COMMERCE_UPDATE_SNAPSHOTS=1` rewrites them.

/// A subgraph's name and the function exporting its SDL.
type Subgraph = (&'static str, fn() -> String);

const SUBGRAPHS: [Subgraph; 3] = [
    ("auth", commerce_auth::graphql::sdl),
    ("product", commerce_product::graphql::sdl),
    ("order", commerce_order::graphql::sdl),
];

#[test]
fn the_checked_in_subgraph_sdl_is_what_the_services_serve() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/../../graphql/subgraphs");
    let update = std::env::var_os("COMMERCE_UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    for (name, sdl) in SUBGRAPHS {
        let path = format!("{directory}/{name}.graphql");
        let served = sdl();
        if update {
            std::fs::create_dir_all(directory).unwrap();
            std::fs::write(&path, &served).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(served.as_str()) {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "stale subgraph SDL: {stale:?}; run `COMMERCE_UPDATE_SNAPSHOTS=1 cargo nextest run -p commerce \
         --test graphql_schema`, then `cd graphql && npm run compose`"
    );
}
