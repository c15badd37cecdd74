//! THE list of modules this server runs. Adding a feature means adding one line to
//! [`declare`]; `[general] modules` and `[[host]] modules` choose among them per host.
//! A module with settings is declared `reloadable`: a configuration reload gives it its new
//! `[modules.NAME]` section ([`prepare_reload`]).

use xmppd_admin::Admin;
use xmppd_admin::adhoc::{AdHoc, Admins, Invitations, LandingPages};
use xmppd_core::storage::Storage;
use xmppd_core::{
    ConfigSource, HostModules, ModuleError, NoSettings, Reconfigured, Registry, RegistryBuilder,
    ReloadPlan, RouterHandle,
};
use xmppd_im::Im;
use xmppd_modules::private::PrivateStore;
use xmppd_modules::{
    Avatars, Blocking, BlockingSettings, Carbons, ContactInfo, ContactInfoSettings, Disco,
    ExternalServices, ExternalServicesSettings, LastActivity, Mam, MamSettings, Ping,
    PrivateInterceptors, PrivateSettings, PrivateXml, Push, PushSettings, Register,
    RegisterSettings, Time, VCardObservers, VCardSettings, VCardStore, VCards, Version,
    VersionSettings,
};
use xmppd_muc::{Muc, MucSettings};
use xmppd_pep::bookmarks::Bookmarks;
use xmppd_pep::vcard_conversion::VCardConversion;
use xmppd_pep::{PepHandle, PepModule, PepObservers, PepSettings};
use xmppd_upload::{Upload, UploadSettings, Uploads};

use crate::Config;
use crate::config::ConfigError;

/// What modules hand to the rest of the server besides the registry.
#[derive(Debug, Default)]
pub struct Wired {
    /// The upload service's files, for the HTTP listeners.
    pub upload: Option<std::sync::Arc<Uploads>>,
    /// The ports the HTTP listeners were given and got, for the invitations' landing pages.
    pub http_ports: crate::invites::BoundPorts,
}

/// Declares every module, in registration order (which is also the order of hooks of equal
/// priority).
fn declare(
    b: &mut RegistryBuilder<'_>,
    config: &Config,
    wired: &mut Wired,
) -> Result<(), ModuleError> {
    b.module("ping", |_: NoSettings, _| Ok(Ping))?;
    // XEP-0191, before "im" so that its filter's priority ties never matter.
    b.reloadable("blocking", |s: BlockingSettings, ctx| {
        let stores = [
            xmppd_modules::blocking::STORE,
            xmppd_modules::blocking::INDEX_STORE,
        ];
        Ok(Blocking::new(
            &ctx.storage(&stores)?,
            s,
            ctx.hosts().to_vec(),
        ))
    })?;
    // RFC 6121: rosters, subscriptions, presence, offline messages.
    let im = config.im;
    b.module("im", move |_: NoSettings, ctx| {
        Ok(Im::new(&ctx.storage(xmppd_im::STORES)?, im))
    })?;
    b.module("disco", |_: NoSettings, ctx| {
        Ok(Disco::new(&ctx.storage(&[])?))
    })?;
    // XEP-0077: creating accounts before authentication (off by default), password changes
    // and account removal; XEP-0445 registration with invitations (XEP-0401).
    b.reloadable("register", |s: RegisterSettings, ctx| {
        let stores = [xmppd_core::invites::INVITES_STORE];
        Ok(Register::new(&ctx.storage(&stores)?, s))
    })?;
    // XEP-0157: contact addresses in the server's disco#info.
    b.reloadable("contact_info", |s: ContactInfoSettings, _| {
        Ok(ContactInfo::new(&s))
    })?;
    // XEP-0215: STUN/TURN servers and TURN credentials.
    b.reloadable("external_services", |s: ExternalServicesSettings, _| {
        ExternalServices::new(s)
    })?;
    b.module("carbons", |_: NoSettings, _| Ok(Carbons::default()))?;
    // XEP-0163 on the XEP-0060 subset it needs.
    // The modules built on PEP (bookmarks, avatar conversion) get its handle and observers;
    // without PEP on some host, they cannot run (a configuration error naming them).
    let mut pep: Option<(PepHandle, PepObservers)> = None;
    b.reloadable("pep", |s: PepSettings, ctx| {
        let module = PepModule::new(&ctx.storage(xmppd_pep::STORES)?, s);
        pep = Some((module.handle(), module.observers()));
        Ok(module)
    })?;
    let needs_pep = |module: &str| ModuleError::Invalid {
        module: module.to_owned(),
        message: "it is built on PEP: add \"pep\" to the modules of every host that runs it"
            .to_owned(),
    };
    b.reloadable("version", |cfg: VersionSettings, _| Ok(Version::new(cfg)))?;
    b.module("time", |_: NoSettings, _| Ok(Time))?;
    b.module("last", |_: NoSettings, ctx| {
        Ok(LastActivity::new(
            &ctx.storage(&[xmppd_modules::last::STORE])?,
        ))
    })?;
    b.reloadable("push", |s: PushSettings, ctx| {
        Ok(Push::new(&ctx.storage(&[xmppd_modules::push::STORE])?, s))
    })?;
    // XEP-0054; the modules built on it add themselves to `vcard_observers`.
    let vcard_observers = VCardObservers::default();
    let observers = vcard_observers.clone();
    b.reloadable("vcard", move |s: VCardSettings, ctx| {
        let storage = ctx.storage(&[xmppd_modules::vcard::STORE])?;
        Ok(VCards::new(&storage, s, observers))
    })?;
    // XEP-0153: reads the vCards' photo hashes, stamps presence, told of vCard changes.
    let observers = vcard_observers.clone();
    b.module("avatar", move |_: NoSettings, ctx| {
        let avatars = Avatars::new(VCardStore::new(&ctx.storage(&[])?));
        observers.add(avatars.observer());
        Ok(avatars)
    })?;
    // XEP-0398: the PEP avatar and the vCard photo kept the same, both ways.
    b.module("vcard_conversion", |_: NoSettings, ctx| {
        let (handle, observers) = pep.clone().ok_or_else(|| needs_pep(ctx.name()))?;
        let vcards = VCardStore::new(&ctx.storage(&[])?);
        Ok(VCardConversion::new(
            handle,
            observers,
            vcards,
            vcard_observers,
        ))
    })?;
    // XEP-0049; XEP-0048 bookmarks take over `storage:bookmarks` through the interceptors.
    let private_interceptors = PrivateInterceptors::default();
    let interceptors = private_interceptors.clone();
    b.reloadable("private", move |s: PrivateSettings, ctx| {
        let storage = ctx.storage(&[xmppd_modules::private::STORE])?;
        Ok(PrivateXml::new(&storage, s, interceptors))
    })?;
    // XEP-0402 with XEP-0048 through private XML and PEP (XEP-0411): the private store is
    // only read (for XEP-0048's `<url/>` bookmarks), so its limits do not matter here.
    b.module("bookmarks", |_: NoSettings, ctx| {
        let (handle, observers) = pep.clone().ok_or_else(|| needs_pep(ctx.name()))?;
        let private = PrivateStore::new(&ctx.storage(&[])?, PrivateSettings::default());
        Ok(Bookmarks::new(
            handle,
            observers,
            private,
            private_interceptors,
        ))
    })?;
    // XEP-0313, after "im" so that hooks of equal priority never depend on the order.
    b.reloadable("mam", |s: MamSettings, ctx| {
        let stores = [
            xmppd_modules::mam::STORE,
            xmppd_modules::mam::PREFS_STORE,
            xmppd_modules::mam::KEY_STORE,
        ];
        Mam::new(&ctx.storage(&stores)?, s, ctx.router())
    })?;
    // XEP-0045 rooms on `conference.<host>`, with their archives (XEP-0313).
    b.reloadable("muc", |s: MucSettings, ctx| {
        Muc::new(
            &ctx.storage(xmppd_muc::STORES)?,
            s,
            ctx.hosts().to_vec(),
            ctx.router(),
        )
    })?;
    // XEP-0363 slots on `upload.<host>`; the HTTP listeners serve the files.
    b.reloadable("upload", |s: UploadSettings, ctx| {
        let storage = ctx.storage(xmppd_upload::STORES)?;
        let module = Upload::new(&storage, s, ctx.hosts().to_vec(), &config.data_dir)?;
        wired.upload = Some(module.uploads());
        Ok(module)
    })?;
    // XEP-0050 ad-hoc commands: XEP-0133's service administration for `[general] admins`.
    // XEP-0401's commands, with which users invite contacts and admins new accounts.
    let admins = Admins::new(config.admins.clone());
    let landing_config = config.clone();
    let ports = wired.http_ports.clone();
    let landing_pages: LandingPages = std::sync::Arc::new(move |host: &str, token: &str| {
        crate::invites::landing_page_on(&landing_config, host, token, &ports)
    });
    let expiry_secs = config.invites.expiry_secs;
    b.module("adhoc", move |_: NoSettings, ctx| {
        let storage = ctx.storage(&[])?;
        let invitations = Invitations::new(
            xmppd_core::Invites::new(storage.map.clone()),
            expiry_secs,
            landing_pages,
        );
        Ok(AdHoc::new(Admin::new(&storage), admins).with_invitations(invitations))
    })?;
    Ok(())
}

/// More modules for one server (tests that prove the platform with modules of their own).
pub type ExtraModules = Box<dyn FnOnce(&mut RegistryBuilder<'_>) -> Result<(), ModuleError> + Send>;

fn hosts(config: &Config) -> Vec<HostModules> {
    config
        .hosts
        .iter()
        .map(|h| HostModules {
            host: h.name.clone(),
            modules: config.host_modules(h),
        })
        .collect()
}

fn source(config: &Config) -> Option<ConfigSource> {
    let text = config.text.clone()?;
    let path = config.source.clone().unwrap_or_default();
    Some(ConfigSource::new(path, text))
}

/// The names of the modules.
pub fn names() -> Vec<&'static str> {
    let mut b = RegistryBuilder::validating(Vec::new());
    // Without configuration nothing can fail: every module gets its defaults.
    let _ = declare(&mut b, &Config::default_localhost(), &mut Wired::default());
    b.declared().to_vec()
}

/// Checks every module's `[modules.NAME]` section, so that a bad setting is reported when
/// the configuration is read (`xmppd check`, start, reload), with its line and key.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let mut b = RegistryBuilder::validating(hosts(config));
    if let Some(source) = source(config) {
        b = b.with_config(source);
    }
    declare(&mut b, config, &mut Wired::default()).map_err(|e| config_error(config, e))
}

/// A module's error as a configuration error of `config`'s file.
fn config_error(config: &Config, e: ModuleError) -> ConfigError {
    ConfigError::Syntax {
        path: config.source.clone().unwrap_or_default(),
        message: match e {
            ModuleError::Config {
                module, message, ..
            } => format!("[modules.{module}]: {message}"),
            other => other.to_string(),
        },
    }
}

/// What a reload did to the modules: which took their new section, and which changed keys
/// wait for the next restart (to be logged).
pub type ModulesReloaded = Reconfigured;

/// Parses and checks the `[modules.NAME]` section of every running module in `config`
/// against the module's own rules, changing nothing: the plan's `apply` puts them all in
/// force. A configuration without text (the built-in one) gives every module its defaults.
pub fn prepare_reload(registry: &Registry, config: &Config) -> Result<ReloadPlan, ConfigError> {
    let source = source(config)
        .unwrap_or_else(|| ConfigSource::new(config.source.clone().unwrap_or_default(), ""));
    registry
        .prepare_reload(&source)
        .map_err(|e| config_error(config, e))
}

/// Gives every running module its section of `config`, all of them or none (see
/// [`prepare_reload`]).
pub fn reload(registry: &Registry, config: &Config) -> Result<ModulesReloaded, ConfigError> {
    Ok(prepare_reload(registry, config)?.apply())
}

/// Builds the registry with the modules each host runs, the handle to give the router, and
/// what the modules hand to the listeners.
pub fn registry(
    config: &Config,
    storage: &Storage,
    extra: Option<ExtraModules>,
) -> Result<(Registry, RouterHandle, Wired), ModuleError> {
    let mut b = RegistryBuilder::new(storage, hosts(config));
    if let Some(source) = source(config) {
        b = b.with_config(source);
    }
    for component in &config.components {
        b.registry_mut().server_item(component.name.clone());
    }
    let mut wired = Wired::default();
    declare(&mut b, config, &mut wired)?;
    if let Some(extra) = extra {
        extra(&mut b)?;
    }
    let (registry, handle) = b.finish()?;
    Ok((registry, handle, wired))
}
