//! forklet's shared model: manifests and their validation, the desired state
//! they describe, the SQLite store, and the control API's wire types.
//!
//! No Docker and no async runtime here: the CLI links this crate to validate
//! manifests offline with exactly the daemon's rules.

pub mod api;
pub mod bounded;
pub mod definition;
pub mod desired;
pub mod event;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod hibernation;
pub mod manifest;
pub mod names;
pub mod operation;
pub mod paths;
pub mod problem;
pub mod quantity;
pub mod schedule;
pub mod schema;
pub mod source;
pub mod store;
pub mod version;
pub mod yaml;

pub use manifest::ObjectKey;
pub use problem::Problem;
