//! The domain and use cases the examples share: a tiny user-registration service.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod orders;
pub mod shipping;
pub mod users;
