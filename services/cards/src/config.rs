//! Cards's settings. Environment prefix `CARDS__`.

use std::path::Path;

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, Section, ServiceConfig};
use serde::Deserialize;

use crate::domain::numbers;

pub const ENV_PREFIX: &str = "CARDS";
pub const DEFAULT_PORT: u16 = 50053;

#[derive(Debug, Clone, Default)]
pub struct CardsConfig {
    pub common: CommonConfig,
    pub cards: CardOfficeConfig,
    pub escn: EscnConfig,
}

/// `[cards]`: how the card office works.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CardOfficeConfig {
    /// The first digits of every card number (1 to 9 digits); the sequence and the
    /// Luhn check digit follow, 16 digits in all.
    pub number_prefix: String,
    /// Whether a request is approved as soon as its holder's smart-card grant is in
    /// force (else the card office approves each one).
    pub auto_approve: bool,
    /// Scope of eduPersonPrincipalName (`login@scope`), the e-purse identifier of a
    /// learner without an INE.
    pub eppn_scope: String,
    /// The photo reference a print batch gives the printer, from `{login}`,
    /// `{learner_number}` and `{learner_id}`.
    pub photo_reference: String,
}

impl Default for CardOfficeConfig {
    fn default() -> Self {
        Self {
            number_prefix: "9250".to_owned(),
            auto_approve: true,
            eppn_scope: "univ-example.fr".to_owned(),
            photo_reference: "{learner_number}.jpg".to_owned(),
        }
    }
}

impl Section for CardOfficeConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if !numbers::valid_prefix(&self.number_prefix) {
            problems.push(format!("{section}.number_prefix: must be 1 to 9 digits"));
        }
        if self.eppn_scope.is_empty()
            || !self.eppn_scope.contains('.')
            || self.eppn_scope.contains('@')
        {
            problems.push(format!(
                "{section}.eppn_scope: required, a domain such as univ-example.fr"
            ));
        }
        let mut rest = self.photo_reference.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                problems.push(format!("{section}.photo_reference: a {{ is not closed"));
                break;
            };
            let name = &rest[open + 1..open + close];
            if !["login", "learner_number", "learner_id"].contains(&name) {
                problems.push(format!(
                    "{section}.photo_reference: unknown field {{{name}}} (login, learner_number, learner_id)"
                ));
            }
            rest = &rest[open + close + 1..];
        }
    }
}

/// `[escn]`: the European Student Card Number.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscnConfig {
    /// The university's Erasmus PIC, 9 digits; empty: no ESCN is made.
    pub pic: String,
    /// This generator's 3-digit prefix in the ESCN's node field.
    pub generator: String,
}

impl Default for EscnConfig {
    fn default() -> Self {
        Self {
            pic: String::new(),
            generator: "001".to_owned(),
        }
    }
}

impl EscnConfig {
    /// Whether ESCNs are made.
    pub fn enabled(&self) -> bool {
        !self.pic.is_empty()
    }
}

impl Section for EscnConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if !self.pic.is_empty() && !numbers::valid_pic(&self.pic) {
            problems.push(format!(
                "{section}.pic: the Erasmus PIC is 9 digits (or empty: no ESCN)"
            ));
        }
        if !numbers::valid_generator(&self.generator) {
            problems.push(format!("{section}.generator: must be 3 digits"));
        }
    }
}

impl ServiceConfig for CardsConfig {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            common: CommonConfig::load(&mut loader),
            cards: loader.section("cards"),
            escn: loader.section("escn"),
        };
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems<S: Section>(section: &S) -> Vec<String> {
        let mut problems = Vec::new();
        section.check("s", &mut problems);
        problems
    }

    #[test]
    fn defaults_are_valid() {
        assert!(problems(&CardOfficeConfig::default()).is_empty());
        assert!(problems(&EscnConfig::default()).is_empty());
    }

    #[test]
    fn each_mistake_is_named() {
        let office = CardOfficeConfig {
            number_prefix: "92a".to_owned(),
            eppn_scope: "x@y".to_owned(),
            photo_reference: "{login}/{name}.jpg".to_owned(),
            ..Default::default()
        };
        assert_eq!(
            problems(&office),
            [
                "s.number_prefix: must be 1 to 9 digits",
                "s.eppn_scope: required, a domain such as univ-example.fr",
                "s.photo_reference: unknown field {name} (login, learner_number, learner_id)",
            ]
        );
        let escn = EscnConfig {
            pic: "12345".to_owned(),
            generator: "1".to_owned(),
        };
        assert_eq!(
            problems(&escn),
            [
                "s.pic: the Erasmus PIC is 9 digits (or empty: no ESCN)",
                "s.generator: must be 3 digits"
            ]
        );
    }
}
