use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files: Vec<PathBuf> = [
        "commerce/auth/v1/auth.proto",
        "commerce/cart/v1/cart.proto",
        "commerce/common/v1/money.proto",
        "commerce/fulfillment/v1/fulfillment.proto",
        "commerce/notification/v1/notification.proto",
        "commerce/order/v1/order.proto",
        "commerce/payment/v1/payment.proto",
        "commerce/product/v1/product.proto",
    ]
    .iter()
    .map(|file| root.join(file))
    .collect();
    // A vendored protoc keeps builds independent of the host's protobuf-compiler.
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    // Every message knows its full name (`prost::Name`): an event's type is its message's
    // name, never a string typed beside it.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
