//! A reload is all-or-nothing: every section is checked before any module takes its new
//! settings.

use std::sync::Arc;

use serde::Deserialize;

use super::*;
use crate::module::{ConfigSource, Module, ModuleError, Registry};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Limits {
    max: u32,
    domain: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max: 0,
            domain: "a".to_owned(),
        }
    }
}

/// A module whose `max` must be positive and whose `domain` is fixed at startup.
struct Limited {
    settings: Live<Limits>,
}

impl Limited {
    fn new(max: u32) -> Arc<Self> {
        Arc::new(Limited {
            settings: Live::new(Limits {
                max,
                ..Limits::default()
            }),
        })
    }
}

impl Module for Limited {
    fn register(self: Arc<Self>, _registry: &mut Registry) {}
}

impl Reconfigure for Limited {
    type Settings = Limits;

    fn check(&self, new: &mut Limits) -> Result<Vec<&'static str>, String> {
        if new.max == 0 {
            return Err("max must be at least 1".to_owned());
        }
        let running = self.settings.get();
        Ok(Fixed::default()
            .key("domain", &running.domain, &new.domain)
            .into_keys())
    }

    fn reconfigure(&self, mut new: Limits) {
        new.domain = self.settings.get().domain.clone();
        self.settings.set(new);
    }
}

fn source(text: &str) -> ConfigSource {
    ConfigSource::new("/etc/xmppd/xmppd.toml", text)
}

fn two() -> (Registry, Arc<Limited>, Arc<Limited>) {
    let (first, second) = (Limited::new(1), Limited::new(2));
    let mut registry = Registry::new();
    registry.add_reloadable("first", first.clone());
    registry.add_reloadable("second", second.clone());
    (registry, first, second)
}

#[test]
fn every_module_takes_its_section() {
    let (registry, first, second) = two();
    let done = registry
        .reconfigure(&source(
            "[modules.first]\nmax = 10\n\n[modules.second]\nmax = 20\n",
        ))
        .expect("valid sections");
    assert_eq!(done.modules, ["first", "second"]);
    assert!(done.restart.is_empty());
    assert_eq!(first.settings.get().max, 10);
    assert_eq!(second.settings.get().max, 20);
    assert_eq!(registry.reloadable(), ["first", "second"]);
}

#[test]
fn an_absent_section_means_the_defaults() {
    let (registry, first, _) = two();
    // `max = 0` is the default here, which the module refuses: the absent section is checked
    // like a written one.
    let e = registry
        .reconfigure(&source("[modules.second]\nmax = 5\n"))
        .expect_err("the default of first is refused");
    assert!(matches!(&e, ModuleError::Invalid { module, .. } if module == "first"));
    assert_eq!(first.settings.get().max, 1);
}

#[test]
fn an_invalid_value_changes_no_module() {
    let (registry, first, second) = two();
    // `second` fails its check after `first` passed: `first` must not have taken its section.
    let e = registry
        .reconfigure(&source(
            "[modules.first]\nmax = 10\n\n[modules.second]\nmax = 0\n",
        ))
        .expect_err("max = 0 is refused");
    assert!(e.to_string().contains("second"), "{e}");
    assert!(e.to_string().contains("max must be at least 1"), "{e}");
    assert_eq!(first.settings.get().max, 1);
    assert_eq!(second.settings.get().max, 2);
}

#[test]
fn an_unknown_key_changes_no_module_and_names_its_line() {
    let (registry, first, second) = two();
    let e = registry
        .reconfigure(&source(
            "[modules.first]\nmax = 10\n\n[modules.second]\nmax = 20\nmaxx = 3\n",
        ))
        .expect_err("a typo is refused");
    let ModuleError::Config {
        module, message, ..
    } = &e
    else {
        panic!("not a configuration error: {e}");
    };
    assert_eq!(module, "second");
    assert!(
        message.contains("maxx") && message.contains("line 6"),
        "{message}"
    );
    assert_eq!(first.settings.get().max, 1);
    assert_eq!(second.settings.get().max, 2);
}

#[test]
fn a_key_fixed_at_startup_is_reported_and_kept() {
    let (registry, first, _) = two();
    let done = registry
        .reconfigure(&source(
            "[modules.first]\nmax = 3\ndomain = \"b\"\n\n[modules.second]\nmax = 4\n",
        ))
        .expect("valid sections");
    assert_eq!(
        done.restart,
        [RestartKey {
            module: "first",
            key: "domain"
        }]
    );
    assert_eq!(done.restart[0].to_string(), "[modules.first] domain");
    let now = first.settings.get();
    assert_eq!((now.max, now.domain.as_str()), (3, "a"));
}

#[test]
fn a_prepared_plan_changes_nothing_until_applied() {
    let (registry, first, second) = two();
    let plan = registry
        .prepare_reload(&source(
            "[modules.first]\nmax = 5\n\n[modules.second]\nmax = 6\n",
        ))
        .expect("valid sections");
    assert_eq!(
        (first.settings.get().max, second.settings.get().max),
        (1, 2)
    );
    drop(plan);
    assert_eq!(
        (first.settings.get().max, second.settings.get().max),
        (1, 2)
    );
    let plan = registry
        .prepare_reload(&source(
            "[modules.first]\nmax = 5\n\n[modules.second]\nmax = 6\n",
        ))
        .expect("valid sections");
    assert_eq!(plan.apply().modules, ["first", "second"]);
    assert_eq!(
        (first.settings.get().max, second.settings.get().max),
        (5, 6)
    );
}

#[test]
fn a_snapshot_taken_before_a_reload_stays_whole() {
    let (registry, first, _) = two();
    let before = first.settings.get();
    registry
        .reconfigure(&source(
            "[modules.first]\nmax = 7\n\n[modules.second]\nmax = 8\n",
        ))
        .expect("valid sections");
    assert_eq!(before.max, 1);
    assert_eq!(first.settings.get().max, 7);
}
