//! `[general] modules`, `[[host]] modules` and `[modules.NAME]`: which modules run where, and
//! each module's own settings.
//!
//! The lists name modules; an unknown name is an error at its line, with the known ones. A
//! host's list replaces the general one for that host; without either, every module runs.
//! The sections belong to the modules: this file only checks that each names a module, and
//! the module's own type (`deny_unknown_fields`) checks the contents when the configuration is
//! validated ([`crate::modules::validate`]), so its errors name the line and key as well.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{ConfigError, Validator};

/// The `[modules]` table: one sub-table per module, whose contents the module checks.
pub(super) type RawModuleSections = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

impl Validator<'_> {
    /// A list of module names, each one known.
    pub(super) fn module_list(
        &self,
        raw: &[Spanned<String>],
        key: &str,
        known: &[&str],
    ) -> Result<Vec<String>, ConfigError> {
        let mut names = Vec::new();
        for (i, name) in raw.iter().enumerate() {
            if !known.contains(&name.get_ref().as_str()) {
                let msg = format!(
                    "there is no module '{}'; the modules are: {}",
                    name.get_ref(),
                    known.join(", ")
                );
                return Err(self.invalid(name.span(), &format!("{key}[{i}]"), msg));
            }
            if !names.contains(name.get_ref()) {
                names.push(name.get_ref().clone());
            }
        }
        Ok(names)
    }

    /// Every `[modules.NAME]` names a known module and is a table.
    pub(super) fn module_sections(
        &self,
        raw: &RawModuleSections,
        known: &[&str],
    ) -> Result<(), ConfigError> {
        for (name, value) in raw {
            let key = format!("modules.{}", name.get_ref());
            if !known.contains(&name.get_ref().as_str()) {
                let msg = format!(
                    "there is no module '{}'; the modules are: {}",
                    name.get_ref(),
                    known.join(", ")
                );
                return Err(self.invalid(name.span(), &key, msg));
            }
            if !value.get_ref().is_table() {
                let msg = format!(
                    "write the settings as a table: [modules.{}]",
                    name.get_ref()
                );
                return Err(self.invalid(value.span(), &key, msg));
            }
        }
        Ok(())
    }
}
