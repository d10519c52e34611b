//! The product service: catalogue and inventory.

pub mod domain;
pub mod handler;
pub mod repository;
pub mod service;

use commerce_runtime::ServiceDefinition;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/product");

pub const DEFINITION: ServiceDefinition = ServiceDefinition {
    name: "product",
    summary: "catalogue, prices and stock",
    migrator: Some(&MIGRATOR),
    messaging: true,
    start: |context| Box::pin(handler::start(context)),
};

/// The demo catalogue `commerce seed` loads into an empty shop.
pub fn demo_catalogue() -> Vec<domain::NewProduct> {
    use rust_decimal::Decimal;
    use std::str::FromStr;
    let items: [(&str, &str, &str, &str, &str, i64); 8] = [
        (
            "MUG-STONE",
            "Stoneware mug",
            "A 350 ml glazed stoneware mug.",
            "kitchen",
            "14.50",
            120,
        ),
        (
            "KETTLE-STEEL",
            "Steel kettle",
            "1.7 l stovetop kettle, brushed steel.",
            "kitchen",
            "39.00",
            40,
        ),
        (
            "TEE-ORGANIC",
            "Organic cotton tee",
            "Heavyweight tee in undyed organic cotton.",
            "apparel",
            "24.00",
            200,
        ),
        (
            "HOODIE-GREY",
            "Grey hoodie",
            "Brushed-back fleece hoodie.",
            "apparel",
            "58.00",
            75,
        ),
        (
            "NOTEBOOK-A5",
            "A5 dotted notebook",
            "192 pages, lay-flat binding.",
            "stationery",
            "12.00",
            300,
        ),
        (
            "PEN-BRASS",
            "Brass pen",
            "Solid brass rollerball, refillable.",
            "stationery",
            "32.00",
            60,
        ),
        (
            "LAMP-DESK",
            "Desk lamp",
            "Dimmable LED desk lamp with USB-C.",
            "home",
            "64.90",
            35,
        ),
        (
            "PLANT-POT",
            "Terracotta pot",
            "18 cm terracotta pot with saucer.",
            "home",
            "9.90",
            150,
        ),
    ];
    items
        .into_iter()
        .map(|(sku, name, description, category, price, stock)| {
            let price = domain::Money::new(Decimal::from_str(price).expect("demo price"), "USD")
                .expect("demo price is valid");
            domain::NewProduct::new(sku, name, description, category, price, stock)
                .expect("demo product is valid")
        })
        .collect()
}
