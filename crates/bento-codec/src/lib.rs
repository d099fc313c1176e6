//! # bento-codec
//!
//! Implementations of the [`Codec`] port. [`Json`] (serde_json) is the default; each codec
//! stamps the envelope's content type and refuses to decode a content type it does not read, so
//! a producer and a consumer that disagree get a dead letter with the reason, not garbage.

mod json;

pub use bento_application::{Codec, CodecError, Encoded};
pub use json::Json;
