//! forge builds Azure Marketplace VM images from TOML recipes and checks any
//! image against the Marketplace security rules.

pub mod accel;
pub mod build;
pub mod check;
pub mod clock;
pub mod diff;
pub mod direct;
pub mod exec;
pub mod guestfs;
pub mod hashcache;
pub mod lock;
pub mod recipe;
pub mod sbom;
pub mod vhd;
