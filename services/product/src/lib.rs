//! The product service: catalogue and inventory.

pub mod cache;
pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod http;
pub mod repository;
pub mod service;
pub mod settings;
pub mod startup;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/product");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "product",
    summary: "catalogue, prices and stock",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(startup::start(context)),
};

/// The demo catalogue `commerce seed` loads into an empty shop: a few hundred products
/// across eight categories, the same every time.
pub fn demo_catalogue() -> Vec<domain::NewProduct> {
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    /// (sku stem, name, description, base price)
    type Item = (&'static str, &'static str, &'static str, &'static str);
    let families: [(&str, [Item; 3]); 8] = [
        (
            "kitchen",
            [
                (
                    "MUG",
                    "Stoneware mug",
                    "A 350 ml glazed stoneware mug.",
                    "14.50",
                ),
                (
                    "KETTLE",
                    "Stovetop kettle",
                    "1.7 l kettle in brushed steel.",
                    "39.00",
                ),
                (
                    "BOARD",
                    "Oak cutting board",
                    "End-grain oak, oiled.",
                    "45.00",
                ),
            ],
        ),
        (
            "apparel",
            [
                (
                    "TEE",
                    "Organic cotton tee",
                    "Heavyweight tee in organic cotton.",
                    "24.00",
                ),
                (
                    "HOODIE",
                    "Fleece hoodie",
                    "Brushed-back fleece hoodie.",
                    "58.00",
                ),
                (
                    "SOCKS",
                    "Merino socks",
                    "Three pairs of merino wool socks.",
                    "19.00",
                ),
            ],
        ),
        (
            "stationery",
            [
                (
                    "NOTEBOOK",
                    "Dotted notebook",
                    "192 pages, lay-flat binding.",
                    "12.00",
                ),
                (
                    "PEN",
                    "Brass pen",
                    "Solid brass rollerball, refillable.",
                    "32.00",
                ),
                (
                    "PLANNER",
                    "Weekly planner",
                    "Undated weekly planner.",
                    "21.00",
                ),
            ],
        ),
        (
            "home",
            [
                (
                    "LAMP",
                    "Desk lamp",
                    "Dimmable LED desk lamp with USB-C.",
                    "64.90",
                ),
                (
                    "POT",
                    "Terracotta pot",
                    "Terracotta pot with saucer.",
                    "9.90",
                ),
                ("THROW", "Wool throw", "Woven lambswool throw.", "89.00"),
            ],
        ),
        (
            "electronics",
            [
                (
                    "EARBUDS",
                    "Wireless earbuds",
                    "Noise-cancelling earbuds.",
                    "129.00",
                ),
                ("CHARGER", "USB-C charger", "65 W GaN charger.", "39.90"),
                (
                    "SPEAKER",
                    "Bluetooth speaker",
                    "Water-resistant speaker.",
                    "79.00",
                ),
            ],
        ),
        (
            "outdoors",
            [
                (
                    "BOTTLE",
                    "Insulated bottle",
                    "750 ml steel bottle.",
                    "29.00",
                ),
                (
                    "TENT",
                    "Two-person tent",
                    "Three-season backpacking tent.",
                    "249.00",
                ),
                (
                    "LANTERN",
                    "Camping lantern",
                    "Rechargeable LED lantern.",
                    "34.50",
                ),
            ],
        ),
        (
            "books",
            [
                (
                    "COOKBOOK",
                    "Seasonal cookbook",
                    "Recipes for every month.",
                    "28.00",
                ),
                ("NOVEL", "Paperback novel", "A modern classic.", "14.99"),
                ("ATLAS", "World atlas", "Large-format atlas.", "49.00"),
            ],
        ),
        (
            "toys",
            [
                ("BLOCKS", "Wooden blocks", "Fifty beech blocks.", "34.00"),
                ("PUZZLE", "Jigsaw puzzle", "1000 pieces.", "22.00"),
                ("KITE", "Stunt kite", "Dual-line stunt kite.", "44.00"),
            ],
        ),
    ];
    let variants = [
        "Black", "White", "Grey", "Navy", "Green", "Red", "Sand", "Blue", "Rust", "Olive",
    ];
    let mut catalogue = Vec::new();
    for (category, items) in families {
        for (stem, name, description, price) in items {
            let base = Decimal::from_str_exact(price).expect("demo price");
            for (index, variant) in variants.iter().enumerate() {
                // Prices and stock vary by variant, so filters and sorting have something to do.
                let step = Decimal::new(index as i64 * 150, 2);
                let price = domain::Money::new(base + step, "USD").expect("demo price is valid");
                let details = domain::ProductDetails {
                    name: format!("{name}, {}", variant.to_lowercase()),
                    description: description.to_owned(),
                    category: category.to_owned(),
                    price,
                    attributes: BTreeMap::from([("colour".to_owned(), variant.to_lowercase())]),
                    images: vec![format!(
                        "https://images.commerce.local/{}/{}.jpg",
                        stem.to_lowercase(),
                        variant.to_lowercase()
                    )],
                    active: true,
                };
                let stock = ((index as i64 * 37 + stem.len() as i64 * 11) % 120)
                    + if index == 9 { -200 } else { 0 };
                let product = domain::NewProduct::with_details(
                    &format!("{stem}-{}", variant.to_uppercase()),
                    details,
                    stock.max(0),
                )
                .expect("demo product is valid");
                catalogue.push(product);
            }
        }
    }
    catalogue
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_catalogue_is_a_few_hundred_distinct_products() {
        let catalogue = super::demo_catalogue();
        assert_eq!(catalogue.len(), 240);
        let skus: std::collections::BTreeSet<_> = catalogue.iter().map(|p| p.sku.clone()).collect();
        assert_eq!(skus.len(), 240);
        assert!(
            catalogue.iter().any(|p| p.stock == 0),
            "some products are out of stock"
        );
    }
}
