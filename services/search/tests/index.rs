//! The tantivy index against a known catalogue.

use std::str::FromStr;
use std::sync::Arc;

use commerce_search::domain::{ProductDoc, SearchQuery, SearchSort};
use commerce_search::repository::{SearchIndex, TantivyIndex};
use rust_decimal::Decimal;
use uuid::Uuid;

fn product(
    n: u128,
    sku: &str,
    name: &str,
    description: &str,
    category: &str,
    price: &str,
    stock: i64,
) -> ProductDoc {
    ProductDoc {
        id: Uuid::from_u128(n),
        sku: sku.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        category: category.to_owned(),
        price: Decimal::from_str(price).unwrap(),
        currency: "USD".to_owned(),
        stock,
        image: None,
        created_at: 1_700_000_000 + n as i64,
        revision: 1,
        units_sold: 0,
    }
}

fn catalogue() -> Vec<ProductDoc> {
    vec![
        product(
            1,
            "IPH-15",
            "iPhone 15 case",
            "Slim case for the phone.",
            "electronics",
            "19.00",
            10,
        ),
        product(
            2,
            "IPH-CH",
            "Charger",
            "Fast charger that suits an iPhone.",
            "electronics",
            "29.00",
            0,
        ),
        product(
            3,
            "LAMP-D",
            "Desk lamp",
            "Dimmable LED lamp.",
            "home",
            "64.90",
            4,
        ),
        product(
            4,
            "LAMP-F",
            "Floor lamp",
            "Tall lamp for reading corners.",
            "home",
            "129.00",
            2,
        ),
        product(
            5,
            "MUG-S",
            "Stoneware mug",
            "Glazed mug, 350 ml.",
            "kitchen",
            "14.50",
            30,
        ),
        product(
            6,
            "KETTLE",
            "Steel kettle",
            "Stovetop kettle; pairs with the mug.",
            "kitchen",
            "39.00",
            0,
        ),
    ]
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_owned(),
        page: 1,
        page_size: 20,
        ..SearchQuery::default()
    }
}

fn skus(index: &TantivyIndex, query: &SearchQuery) -> Vec<String> {
    index
        .search(query)
        .unwrap()
        .items
        .into_iter()
        .map(|item| item.sku)
        .collect()
}

fn filled() -> (tempfile::TempDir, TantivyIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(dir.path()).unwrap();
    index.upsert(&catalogue()).unwrap();
    (dir, index)
}

#[test]
fn typos_are_forgiven_and_names_outrank_descriptions() {
    let (_dir, index) = filled();
    // "iphnoe": two letters swapped still finds the iPhone items; the one named iPhone first.
    assert_eq!(skus(&index, &query("iphnoe")), ["IPH-15", "IPH-CH"]);
    assert_eq!(skus(&index, &query("iphone")), ["IPH-15", "IPH-CH"]);
    // "mug" is the mug's name and only in the kettle's description.
    assert_eq!(skus(&index, &query("mug")), ["MUG-S", "KETTLE"]);
    // Every word must match.
    assert_eq!(skus(&index, &query("desk lamp")), ["LAMP-D"]);
    assert!(skus(&index, &query("lamp kettle")).is_empty());
    // Exact SKUs find their product.
    assert_eq!(skus(&index, &query("lamp-f"))[0], "LAMP-F");
    assert!(skus(&index, &query("zzzzzz")).is_empty());
}

#[test]
fn filters_facets_sorting_and_pages() {
    let (_dir, index) = filled();
    let all = index.search(&query("")).unwrap();
    assert_eq!(all.total, 6);
    let facets: Vec<_> = all
        .categories
        .iter()
        .map(|facet| (facet.value.as_str(), facet.count))
        .collect();
    assert_eq!(facets, [("electronics", 2), ("home", 2), ("kitchen", 2)]);

    let kitchen = SearchQuery {
        category: Some("kitchen".into()),
        ..query("")
    };
    let results = index.search(&kitchen).unwrap();
    assert_eq!(results.total, 2);
    assert_eq!(
        results.categories.len(),
        3,
        "facets ignore the category filter so shoppers can switch"
    );

    let ranged = SearchQuery {
        min_price: Some(Decimal::from(20)),
        max_price: Some(Decimal::from(70)),
        sort: SearchSort::PriceAsc,
        ..query("")
    };
    assert_eq!(skus(&index, &ranged), ["IPH-CH", "KETTLE", "LAMP-D"]);
    let in_stock = SearchQuery {
        in_stock: Some(true),
        sort: SearchSort::PriceDesc,
        ..query("")
    };
    assert_eq!(
        skus(&index, &in_stock),
        ["LAMP-F", "LAMP-D", "IPH-15", "MUG-S"]
    );
    let lamp_facets = index.search(&query("lamp")).unwrap().categories;
    assert_eq!(lamp_facets.len(), 1);
    assert_eq!(
        (lamp_facets[0].value.as_str(), lamp_facets[0].count),
        ("home", 2)
    );

    let newest = SearchQuery {
        sort: SearchSort::Newest,
        page_size: 2,
        ..query("")
    };
    assert_eq!(skus(&index, &newest), ["KETTLE", "MUG-S"]);
    let second_page = SearchQuery {
        page: 2,
        ..newest.clone()
    };
    assert_eq!(skus(&index, &second_page), ["LAMP-F", "LAMP-D"]);
    assert_eq!(index.search(&second_page).unwrap().total, 6);
}

#[test]
fn completion_and_similar_words() {
    let (_dir, index) = filled();
    assert_eq!(index.autocomplete("la", 5).unwrap().len(), 2);
    assert_eq!(index.autocomplete("desk l", 5).unwrap(), ["Desk lamp"]);
    assert_eq!(index.autocomplete("STONE", 5).unwrap(), ["Stoneware mug"]);
    assert!(index.autocomplete("xyz", 5).unwrap().is_empty());
    assert_eq!(index.similar_words("lmap", 1).unwrap(), ["lamp"]);
    assert_eq!(index.similar_words("kettel", 1).unwrap(), ["kettle"]);
    assert!(index.similar_words("zzzzzzzz", 1).unwrap().is_empty());
}

#[test]
fn updates_deletes_replays_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let index = TantivyIndex::open(dir.path()).unwrap();
        index.upsert(&catalogue()).unwrap();
        let before = index.all().unwrap();
        // The same events again: same index.
        index.upsert(&catalogue()).unwrap();
        assert_eq!(index.all().unwrap(), before);

        let mut cheaper = catalogue()[2].clone();
        cheaper.price = Decimal::from(50);
        cheaper.revision = 3;
        index.upsert(&[cheaper.clone()]).unwrap();
        // An older state replayed after a newer one (a consumer catching up on top of a
        // rebuild) changes nothing; the same revision again applies.
        let mut replayed = cheaper.clone();
        replayed.price = Decimal::from(70);
        replayed.revision = 2;
        index.upsert(&[replayed]).unwrap();
        index.upsert(&[cheaper]).unwrap();
        index.delete(&[Uuid::from_u128(6)]).unwrap();
        index.delete(&[Uuid::from_u128(6)]).unwrap();
        let after = index.all().unwrap();
        assert_eq!(after.len(), 5);
        assert_eq!(
            after.iter().find(|p| p.sku == "LAMP-D").unwrap().price,
            Decimal::from(50)
        );
    }
    // A new process opens the same directory and finds everything.
    let reopened: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(dir.path()).unwrap());
    assert_eq!(reopened.all().unwrap().len(), 5);
    assert_eq!(reopened.search(&query("kettle")).unwrap().total, 0);
    assert_eq!(
        reopened.search(&query("desk")).unwrap().items[0].price,
        Decimal::from(50)
    );
}

#[test]
fn what_sells_ranks_first_among_equal_matches_and_in_its_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(dir.path()).unwrap();
    let mut quiet = product(1, "LAMP-A", "Brass lamp", "", "home", "40.00", 3);
    let mut seller = product(2, "LAMP-B", "Steel lamp", "", "home", "45.00", 3);
    let mut middling = product(3, "MUG-C", "Clay mug", "", "kitchen", "9.00", 3);
    quiet.units_sold = 0;
    seller.units_sold = 120;
    middling.units_sold = 7;
    index.upsert(&[quiet, seller, middling]).unwrap();
    // Both names match "lamp" alike; the one that sells comes first.
    assert_eq!(skus(&index, &query("lamp")), ["LAMP-B", "LAMP-A"]);
    let best_selling = SearchQuery {
        sort: SearchSort::BestSelling,
        ..query("")
    };
    assert_eq!(skus(&index, &best_selling), ["LAMP-B", "MUG-C", "LAMP-A"]);
    // Sales are not shown to shoppers.
    let shown = serde_json::to_value(&index.search(&best_selling).unwrap().items[0]).unwrap();
    assert!(
        shown.get("unitsSold").is_none() && shown.get("revision").is_none(),
        "{shown}"
    );
}

#[test]
fn known_words_have_frequencies() {
    let (_dir, index) = filled();
    assert_eq!(
        index.word_frequency("lamp").unwrap(),
        2 + 2,
        "two names and two descriptions"
    );
    assert_eq!(index.word_frequency("LAMP").unwrap(), 4);
    assert_eq!(index.word_frequency("lmap").unwrap(), 0);
}
