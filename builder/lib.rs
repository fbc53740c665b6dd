//! forge builds Azure Marketplace VM images from TOML recipes and checks any
//! image against the Marketplace security rules.

pub mod accel;
pub mod check;
pub mod guestfs;
pub mod vhd;
