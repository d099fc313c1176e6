//! The domain and use cases the examples share: a tiny user-registration service.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod orders;
pub mod shipping;
pub mod users;

/// When the example was started with `--asyncapi` (or `BENTO_ASYNCAPI=1`), prints the AsyncAPI
/// document of what it declared so far and returns `true`: the example then exits, having
/// connected to no broker (the runtime built it offline).
pub fn print_asyncapi_if_asked(
    bento: &bento_runtime::Bento,
    title: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    if !bento.is_offline() {
        return Ok(false);
    }
    let document = bento
        .asyncapi()?
        .title(title)
        .version(env!("CARGO_PKG_VERSION"))
        .description(format!(
            "The `{title}` example of Bento (examples/{title}), as it declares itself."
        ))
        .to_json_pretty()?;
    println!("{document}");
    Ok(true)
}
