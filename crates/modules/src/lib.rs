//! Server features, one module per XEP. `xmppd`'s `modules.rs` lists which are enabled.

pub mod disco;
pub mod ping;

pub use disco::Disco;
pub use ping::Ping;
