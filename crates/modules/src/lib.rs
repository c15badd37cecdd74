//! Server features, one module per XEP. `xmppd`'s `modules.rs` lists which are enabled.

pub mod avatar;
pub mod blocking;
pub mod carbons;
pub mod contact_info;
pub mod disco;
pub mod external_services;
pub mod last;
pub mod mam;
pub mod ping;
pub mod private;
pub mod push;
pub mod register;
pub mod time;
pub mod vcard;
pub mod version;

pub use avatar::Avatars;
pub use blocking::{Blocking, BlockingSettings};
pub use carbons::Carbons;
pub use contact_info::{ContactInfo, ContactInfoSettings};
pub use disco::Disco;
pub use external_services::{ExternalServices, ExternalServicesSettings};
pub use last::LastActivity;
pub use mam::{Mam, MamSettings};
pub use ping::Ping;
pub use private::{PrivateInterceptors, PrivateSettings, PrivateXml};
pub use push::{Push, PushSettings};
pub use register::{Register, RegisterSettings};
pub use time::Time;
pub use vcard::{VCardObservers, VCardSettings, VCardStore, VCards};
pub use version::{Version, VersionSettings};
