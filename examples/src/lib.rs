//! The domain and use cases the examples share: a tiny user-registration service.

pub mod shipping;
pub mod users;
