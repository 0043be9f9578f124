//! The entry a learner should have in LDAP, and how an existing entry differs from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hosted_contracts::v1;
use hosted_platform::clock::Clock;
use time::{Date, format_description::BorrowedFormatItem, macros::format_description};

use super::{
    escape,
    supann::{self, AccountState},
};

const COMPACT_DATE: &[BorrowedFormatItem<'static>] = format_description!("[year][month][day]");

/// The object classes of a hosted learner's entry.
pub const OBJECT_CLASSES: [&str; 7] = [
    "top",
    "person",
    "organizationalPerson",
    "inetOrgPerson",
    "eduPerson",
    "supannPerson",
    "supannCMS",
];

/// Attributes the directory service owns on its entries: it writes them and removes
/// them when they no longer apply. Any other attribute on the entry is left alone.
pub const MANAGED_ATTRIBUTES: [&str; 22] = [
    "uid",
    "cn",
    "sn",
    "givenName",
    "displayName",
    "mail",
    "eduPersonPrincipalName",
    "eduPersonAffiliation",
    "eduPersonPrimaryAffiliation",
    "supannCodePopulation",
    "supannRessourceEtatDate",
    "supannNomDeNaissance",
    "supannOIDCDateDeNaissance",
    "supannCodeINE",
    "supannExtProfil",
    "supannExtDateFin",
    "supannParrainDN",
    "supannEtablissement",
    "eduPersonEntitlement",
    "supannRefId",
    "supannCMSId",
    "supannCMSDateFin",
];

/// Where and how entries are written.
#[derive(Debug, Clone)]
pub struct EntrySettings {
    /// The managed base, e.g. `ou=people,dc=univ-example,dc=fr`.
    pub base_dn: String,
    /// The scope of eduPersonPrincipalName, e.g. `univ-example.fr`.
    pub eppn_scope: String,
    /// What each resource in force is published as: this prefix and the resource,
    /// e.g. `urn:mace:univ-example.fr:entitlement:` + `library`.
    pub entitlement_prefix: String,
    /// The university, as SupAnn labels it: `{UAI}0999999F`.
    pub establishment: String,
    /// Where sponsors' entries are: a sponsor's DN is `uid=<login>,<this>`.
    pub sponsor_base_dn: String,
    /// The university's time zone, for dates written as instants.
    pub clock: hosted_platform::clock::Clock,
    /// How long an account lives on after its last stay.
    pub lifecycle: Lifecycle,
}

/// What entitlement, cards and the directory itself add to a learner's entry.
#[derive(Debug, Clone, Copy)]
pub struct Extras<'a> {
    /// The resources in force today (from the newest grants event).
    pub in_force: &'a [String],
    /// The enabled card, if one is.
    pub card: Option<Card<'a>>,
    /// Sponsor logins (in lower case) looked for under the sponsor base and not
    /// found: such a sponsor is not named. A login not in it is named.
    pub sponsors_without_entry: &'a BTreeSet<String>,
}

static NO_SPONSOR_MISSING: BTreeSet<String> = BTreeSet::new();

impl Default for Extras<'_> {
    fn default() -> Self {
        Self {
            in_force: &[],
            card: None,
            sponsors_without_entry: &NO_SPONSOR_MISSING,
        }
    }
}

/// An enabled card.
#[derive(Debug, Clone, Copy)]
pub struct Card<'a> {
    /// The chip's serial number, hexadecimal.
    pub csn: &'a str,
    /// The end of its validity.
    pub valid_until: Option<time::OffsetDateTime>,
}

/// An instant as LDAP's GeneralizedTime, in UTC: `20270630220000Z`.
fn generalized(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The end of `day` where the university is, as GeneralizedTime.
fn end_of_day(settings: &EntrySettings, day: Date) -> String {
    let end = settings.clock.end_of(day);
    time::OffsetDateTime::from_unix_timestamp(end.as_second())
        .map(generalized)
        .unwrap_or_default()
}

/// An entry: its DN and the values of its managed attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attributes: BTreeMap<&'static str, Vec<String>>,
    /// Values left out because writing them could forge or break a value (a key
    /// added to a composite, a DN made of a bad login): for the log, by stay id only.
    pub withheld: Vec<Withheld>,
    /// The stays whose sponsor is not named because their entry was not found under
    /// the sponsor base: for the log, by stay id only.
    pub sponsors_without_entry: Vec<String>,
}

/// One value left out of an entry, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// The stay it came from (empty for the card).
    pub stay_id: String,
    /// The attribute, or `attribute.key` for a key of a composite.
    pub what: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("the learner has no person")]
    NoPerson,
    #[error("the learner has no login")]
    NoLogin,
    #[error("stay {stay_id}: bad date {value:?}")]
    BadDate { stay_id: String, value: String },
}

fn parse(stay: &v1::Stay, value: &str) -> Result<Date, EntryError> {
    hosted_platform::clock::parse_day(value).ok_or_else(|| EntryError::BadDate {
        stay_id: stay.stay_id.clone(),
        value: value.to_owned(),
    })
}

fn compact(date: Date) -> String {
    date.format(COMPACT_DATE).unwrap_or_default()
}

/// The DN of a learner's entry.
pub fn dn(login: &str, base_dn: &str) -> String {
    format!("uid={},{base_dn}", escape::dn_value(login))
}

struct DatedStay<'a> {
    stay: &'a v1::Stay,
    start: Date,
    end: Date,
}

/// How long an account lives on after its last stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Days after the last stay's end during which the account still works
    /// (SupannSursis).
    pub grace_days: i64,
    /// Days the expired account is kept (SupannExpire) before its data is due for
    /// deletion.
    pub expired_days: i64,
    /// Days in SupannSupprDonnees before the entry is removed.
    pub deletion_days: i64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            grace_days: 30,
            expired_days: 365,
            deletion_days: 30,
        }
    }
}

/// Where an account stands on a day: a state and the days it spans, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Entry(AccountState, Option<Date>, Option<Date>),
    Removed,
}

fn plus(day: Date, days: i64) -> Date {
    day.checked_add(time::Duration::days(days))
        .unwrap_or(Date::MAX)
}

/// What an entry says on a day: the account's standing, and the stays whose
/// populations, profiles and sponsors it carries.
struct Described<'s, 'a> {
    standing: Standing,
    stays: Vec<&'s DatedStay<'a>>,
    /// Whether those stays give their affiliations: not before they start.
    affiliated: bool,
}

/// Today's truth, from the stays (cancelled ones left out):
/// - stays in force today: `SupannActif`, the days of those stays; they alone make
///   the populations and affiliations (a stay to come changes nothing yet);
/// - none in force, one to come, and the grace period after an ended stay still
///   running: `SupannSursis` until the grace ends or the next stay starts, with the
///   stays that ended last;
/// - none in force, one to come otherwise (before the first stay, or in a gap after
///   its grace): `SupannAnticipe`, the days of the stays that start next; the entry
///   says what the account will be (population, profile) but gives no affiliation
///   before the first day;
/// - every stay ended: the grace period, the expired account, the data-deletion
///   deadline after the last end, then nothing, with the stays that ended last.
fn describe<'s, 'a>(
    stays: &'s [DatedStay<'a>],
    today: Date,
    lifecycle: Lifecycle,
) -> Described<'s, 'a> {
    let in_force: Vec<&DatedStay<'_>> = stays
        .iter()
        .filter(|s| s.start <= today && today <= s.end)
        .collect();
    if !in_force.is_empty() {
        let from = in_force.iter().map(|s| s.start).min();
        let to = in_force.iter().map(|s| s.end).max();
        return Described {
            standing: Standing::Entry(AccountState::Active, from, to),
            stays: in_force,
            affiliated: true,
        };
    }
    let last_end = stays.iter().filter(|s| s.end < today).map(|s| s.end).max();
    let next_start = stays
        .iter()
        .filter(|s| s.start > today)
        .map(|s| s.start)
        .min();
    let ended_on =
        |end: Date| -> Vec<&DatedStay<'_>> { stays.iter().filter(|s| s.end == end).collect() };
    match (last_end, next_start) {
        (None, None) => Described {
            standing: Standing::Entry(AccountState::Inactive, None, None),
            stays: Vec::new(),
            affiliated: false,
        },
        (Some(end), Some(next)) if today <= plus(end, lifecycle.grace_days) => Described {
            standing: Standing::Entry(
                AccountState::Grace,
                Some(plus(end, 1)),
                Some(plus(end, lifecycle.grace_days).min(plus(next, -1))),
            ),
            stays: ended_on(end),
            affiliated: true,
        },
        (_, Some(next)) => {
            let coming: Vec<&DatedStay<'_>> = stays.iter().filter(|s| s.start == next).collect();
            let to = coming.iter().map(|s| s.end).max();
            Described {
                standing: Standing::Entry(AccountState::Anticipated, Some(next), to),
                stays: coming,
                affiliated: false,
            }
        }
        (Some(end), None) => {
            let grace_end = plus(end, lifecycle.grace_days);
            let expired_end = plus(grace_end, lifecycle.expired_days);
            let deletion_end = plus(expired_end, lifecycle.deletion_days);
            let period =
                |state, from: Date, to: Date| Standing::Entry(state, Some(plus(from, 1)), Some(to));
            let standing = if today <= grace_end {
                period(AccountState::Grace, end, grace_end)
            } else if today <= expired_end {
                period(AccountState::Expired, grace_end, expired_end)
            } else if today <= deletion_end {
                period(AccountState::DataDeletion, expired_end, deletion_end)
            } else {
                Standing::Removed
            };
            Described {
                standing,
                stays: ended_on(end),
                affiliated: true,
            }
        }
    }
}

fn dated_stays(learner: &v1::Learner) -> Result<Vec<DatedStay<'_>>, EntryError> {
    learner
        .stays
        .iter()
        .filter(|stay| stay.status() != v1::StayStatus::Cancelled)
        .map(|stay| {
            Ok(DatedStay {
                stay,
                start: parse(stay, &stay.start_date)?,
                end: parse(stay, &stay.end_date)?,
            })
        })
        .collect()
}

/// A locked learner's state (`S:SupannVerrouAdministratif` or
/// `S:SupannVerrouTechnique`) and the lock's day where the university is; none when
/// the learner is not locked.
fn lock_state(learner: &v1::Learner, clock: &Clock) -> Option<(AccountState, Date)> {
    let lock = learner.lock.as_ref()?;
    let state = match lock.kind() {
        v1::LockKind::Technical => AccountState::LockedTechnical,
        v1::LockKind::Administrative | v1::LockKind::Unspecified => {
            AccountState::LockedAdministrative
        }
    };
    let since = lock
        .since
        .as_ref()
        .and_then(|since| {
            jiff::Timestamp::new(since.seconds, since.nanos.clamp(0, 999_999_999)).ok()
        })
        .unwrap_or_else(|| clock.now());
    Some((state, clock.date_at(since)))
}

/// The standing with the learner's lock over it: a locked account is suspended from
/// the lock's day, with no end (until unlocked). An account whose time is over is
/// removed all the same.
fn with_lock(standing: Standing, learner: &v1::Learner, clock: &Clock) -> Standing {
    match (standing, lock_state(learner, clock)) {
        (Standing::Entry(..), Some((state, on))) => Standing::Entry(state, Some(on), None),
        (standing, _) => standing,
    }
}

/// The account's `{COMPTE}` state and the days it spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSpan {
    pub state: AccountState,
    pub from: Option<Date>,
    pub to: Option<Date>,
}

/// The account's `{COMPTE}` state and the days it spans on `today`; `None` once the
/// entry is to be removed.
pub fn account_state(
    learner: &v1::Learner,
    lifecycle: Lifecycle,
    clock: &Clock,
    today: Date,
) -> Result<Option<StateSpan>, EntryError> {
    let stays = dated_stays(learner)?;
    let standing = describe(&stays, today, lifecycle).standing;
    Ok(match with_lock(standing, learner, clock) {
        Standing::Entry(state, from, to) => Some(StateSpan { state, from, to }),
        Standing::Removed => None,
    })
}

/// The next day after `today` on which the entry changes by the calendar alone: a
/// stay starts or ends, a grace period after a stay ends, or the account moves to
/// its next state after the last end.
pub fn next_change(learner: &v1::Learner, lifecycle: Lifecycle, today: Date) -> Option<Date> {
    let stays = dated_stays(learner).ok()?;
    let end = stays.iter().map(|s| s.end).max()?;
    let grace_end = plus(end, lifecycle.grace_days);
    let expired_end = plus(grace_end, lifecycle.expired_days);
    let deletion_end = plus(expired_end, lifecycle.deletion_days);
    stays
        .iter()
        .flat_map(|s| {
            [
                s.start,
                plus(s.end, 1),
                plus(s.end, lifecycle.grace_days + 1),
            ]
        })
        .chain([
            plus(grace_end, 1),
            plus(expired_end, 1),
            plus(deletion_end, 1),
        ])
        .filter(|day| *day > today)
        .min()
}

/// A composite value (`[key=value]…`) built key by key: a key whose value could add
/// a key or end the value early is left out and recorded.
struct Composite<'w> {
    text: String,
    stay_id: &'w str,
    withheld: &'w mut Vec<Withheld>,
}

impl Composite<'_> {
    fn key(&mut self, key: &'static str, what: &'static str, value: &str) -> &mut Self {
        if value.is_empty() {
            return self;
        }
        if supann::fits_composite(value) {
            self.text.push_str(&format!("[{key}={value}]"));
        } else {
            self.withheld.push(Withheld {
                stay_id: self.stay_id.to_owned(),
                what,
            });
        }
        self
    }

    /// A key whose value is a DN this module built from checked parts (its `=` and
    /// `,` are the DN's own).
    fn dn_key(&mut self, key: &'static str, dn: Option<&str>) -> &mut Self {
        if let Some(dn) = dn {
            self.text.push_str(&format!("[{key}={dn}]"));
        }
        self
    }
}

/// The entry a learner should have, as of `today`; `None` once the account's time is
/// over and the entry is to be removed. Only the stays in force today make its
/// populations and affiliations (see `describe`).
pub fn desired(
    learner: &v1::Learner,
    extras: Extras<'_>,
    settings: &EntrySettings,
    today: Date,
) -> Result<Option<Entry>, EntryError> {
    let person = learner.person.as_ref().ok_or(EntryError::NoPerson)?;
    if person.login.is_empty() {
        return Err(EntryError::NoLogin);
    }
    let stays = dated_stays(learner)?;
    let described = describe(&stays, today, settings.lifecycle);
    let locked = lock_state(learner, &settings.clock).is_some();
    let Standing::Entry(state, start, end) =
        with_lock(described.standing, learner, &settings.clock)
    else {
        return Ok(None);
    };
    let counted = &described.stays;
    let mut withheld = Vec::new();

    let mut attributes: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut set = |name: &'static str, values: Vec<String>| {
        let values: Vec<String> = values
            .into_iter()
            .filter(|value| !value.is_empty())
            .collect();
        if !values.is_empty() {
            attributes.insert(name, values);
        }
    };
    let given_first = hosted_identity::names::first_given_name(&person.given_names);
    set("uid", vec![person.login.clone()]);
    set(
        "cn",
        vec![format!("{} {}", person.given_names, person.family_name)],
    );
    set("sn", vec![person.family_name.clone()]);
    set("givenName", vec![person.given_names.clone()]);
    set(
        "displayName",
        vec![format!("{given_first} {}", person.family_name)],
    );
    set("mail", vec![person.email.clone()]);
    set(
        "eduPersonPrincipalName",
        vec![format!("{}@{}", person.login, settings.eppn_scope)],
    );
    let birth_name = if person.birth_name.is_empty() {
        &person.family_name
    } else {
        &person.birth_name
    };
    set("supannNomDeNaissance", vec![birth_name.clone()]);
    set("supannOIDCDateDeNaissance", vec![person.birth_date.clone()]);
    set("supannCodeINE", vec![person.ine.clone()]);
    // The university, and the partner institution of each co-accredited stay the
    // entry describes (the agreement's UAI, when it is a valid one).
    let mut establishments = vec![settings.establishment.clone()];
    for s in counted {
        let uai = &s.stay.partner_uai;
        if uai.is_empty() {
            continue;
        }
        if supann::valid_uai(uai) {
            let partner = format!("{{UAI}}{uai}");
            if !establishments.contains(&partner) {
                establishments.push(partner);
            }
        } else {
            withheld.push(Withheld {
                stay_id: s.stay.stay_id.clone(),
                what: "supannEtablissement",
            });
        }
    }
    set("supannEtablissement", establishments);
    // A locked account publishes no entitlement and no card, whatever the grants
    // and cards events that follow the lock have yet to say.
    let in_force: &[String] = if locked { &[] } else { extras.in_force };
    set(
        "eduPersonEntitlement",
        in_force
            .iter()
            .map(|resource| format!("{}{resource}", settings.entitlement_prefix))
            .collect(),
    );
    let card = extras.card.filter(|card| !locked && !card.csn.is_empty());
    if let Some(card) = card {
        // A labelled id: `{ISO15693}` and the chip's serial number, hexadecimal.
        if card.csn.bytes().all(|b| b.is_ascii_hexdigit()) {
            set("supannRefId", vec![format!("{{ISO15693}}{}", card.csn)]);
            set("supannCMSId", vec![format!("{{ISO15693}}{}", card.csn)]);
            set(
                "supannCMSDateFin",
                card.valid_until.map(generalized).into_iter().collect(),
            );
        } else {
            withheld.push(Withheld {
                stay_id: String::new(),
                what: "supannRefId",
            });
        }
    }

    // Population codes come from the catalogue (data): one that could break a
    // composite is left out everywhere, not only in the profile.
    let mut codes: BTreeSet<String> = BTreeSet::new();
    for s in counted {
        let code = &s.stay.supann_population;
        if supann::fits_composite(code) {
            codes.insert(code.clone());
        } else if !code.is_empty() {
            withheld.push(Withheld {
                stay_id: s.stay.stay_id.clone(),
                what: "supannCodePopulation",
            });
        }
    }
    let mut affiliations = BTreeSet::new();
    let mut primary: Option<(&str, u32)> = None;
    for code in &codes {
        if let Some((code_affiliations, weight)) = supann::population(code) {
            affiliations.extend(code_affiliations.iter().map(|a| (*a).to_owned()));
            if primary.is_none_or(|(_, heaviest)| weight > heaviest) {
                primary = Some((code_affiliations[0], weight));
            }
        }
    }
    set("supannCodePopulation", codes.iter().cloned().collect());
    if described.affiliated {
        set("eduPersonAffiliation", affiliations.into_iter().collect());
        set(
            "eduPersonPrimaryAffiliation",
            primary
                .map(|(affiliation, _)| affiliation.to_owned())
                .into_iter()
                .collect(),
        );
    }
    // A sponsor is named only by a syntactically valid login, escaped as a DN value,
    // and not when their entry was looked for and not found.
    let mut sponsors_without_entry = Vec::new();
    let mut sponsor_dn = |s: &DatedStay<'_>| -> Option<String> {
        let login = &s.stay.sponsor_login;
        if login.is_empty() {
            return None;
        }
        if !supann::valid_login(login) {
            withheld.push(Withheld {
                stay_id: s.stay.stay_id.clone(),
                what: "supannParrainDN",
            });
            return None;
        }
        if extras
            .sponsors_without_entry
            .contains(&login.to_ascii_lowercase())
        {
            sponsors_without_entry.push(s.stay.stay_id.clone());
            return None;
        }
        Some(format!(
            "uid={},{}",
            escape::dn_value(login),
            settings.sponsor_base_dn
        ))
    };
    let sponsors: Vec<Option<String>> = counted.iter().map(|s| sponsor_dn(s)).collect();
    let mut profiles = Vec::with_capacity(counted.len());
    for (s, sponsor) in counted.iter().zip(&sponsors) {
        let affiliation = supann::population(&s.stay.supann_population)
            .map(|(affiliations, _)| affiliations[0])
            .unwrap_or_default();
        let mut profile = Composite {
            text: String::new(),
            stay_id: &s.stay.stay_id,
            withheld: &mut withheld,
        };
        profile
            .key("etab", "supannExtProfil.etab", &settings.establishment)
            .key("affil", "supannExtProfil.affil", affiliation)
            .key("affect", "supannExtProfil.affect", &s.stay.sponsor_unit)
            .dn_key("parrain", sponsor.as_deref())
            .key(
                "population",
                "supannExtProfil.population",
                &s.stay.supann_population,
            )
            .key("datefin", "supannExtProfil.datefin", &compact(s.end));
        profiles.push(profile.text);
    }
    set("supannExtProfil", profiles);
    set(
        "supannExtDateFin",
        counted
            .iter()
            .map(|s| s.end)
            .max()
            .map(|end| end_of_day(settings, end))
            .into_iter()
            .collect(),
    );
    let sponsors: BTreeSet<String> = sponsors.into_iter().flatten().collect();
    set("supannParrainDN", sponsors.into_iter().collect());
    let (letter, sub_state) = state.supann();
    set(
        "supannRessourceEtatDate",
        vec![format!(
            "{{COMPTE}}{letter}:{sub_state}:{}:{}",
            start.map(compact).unwrap_or_default(),
            end.map(compact).unwrap_or_default()
        )],
    );
    Ok(Some(Entry {
        dn: dn(&person.login, &settings.base_dn),
        attributes,
        withheld,
        sponsors_without_entry,
    }))
}

/// One managed attribute whose values differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub name: &'static str,
    pub desired: Vec<String>,
    pub actual: Vec<String>,
}

/// The managed attributes whose values in `actual` (names in any case) differ from
/// `desired`; values compare as sets, exactly.
pub fn differences(desired: &Entry, actual: &HashMap<String, Vec<String>>) -> Vec<Difference> {
    let actual: HashMap<String, &Vec<String>> = actual
        .iter()
        .map(|(name, values)| (name.to_ascii_lowercase(), values))
        .collect();
    let mut differences = Vec::new();
    for name in MANAGED_ATTRIBUTES {
        let want = desired.attributes.get(name).cloned().unwrap_or_default();
        let have = actual
            .get(&name.to_ascii_lowercase())
            .map(|values| (*values).clone())
            .unwrap_or_default();
        let want_set: BTreeSet<&String> = want.iter().collect();
        let have_set: BTreeSet<&String> = have.iter().collect();
        if want_set != have_set {
            differences.push(Difference {
                name,
                desired: want,
                actual: have,
            });
        }
    }
    differences
}

/// Object classes the entry lacks.
pub fn missing_object_classes(actual: &HashMap<String, Vec<String>>) -> Vec<String> {
    let have: BTreeSet<String> = actual
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("objectClass"))
        .flat_map(|(_, values)| values.iter().map(|v| v.to_ascii_lowercase()))
        .collect();
    OBJECT_CLASSES
        .iter()
        .filter(|class| !have.contains(&class.to_ascii_lowercase()))
        .map(|class| (*class).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn settings() -> EntrySettings {
        EntrySettings {
            base_dn: "ou=people,dc=univ-example,dc=fr".to_owned(),
            eppn_scope: "univ-example.fr".to_owned(),
            entitlement_prefix: "urn:mace:univ-example.fr:entitlement:".to_owned(),
            establishment: "{UAI}0999999F".to_owned(),
            sponsor_base_dn: "ou=people,dc=univ-example,dc=fr".to_owned(),
            clock: hosted_platform::clock::Clock::default(),
            lifecycle: Lifecycle::default(),
        }
    }

    fn stay(code: &str, start: &str, end: &str) -> v1::Stay {
        v1::Stay {
            stay_id: format!("{code}-{start}"),
            population: "P".to_owned(),
            supann_population: code.to_owned(),
            sponsor_unit: "IFSI-NORD".to_owned(),
            start_date: start.to_owned(),
            end_date: end.to_owned(),
            status: v1::StayStatus::Active.into(),
            ..Default::default()
        }
    }

    fn learner(stays: Vec<v1::Stay>) -> v1::Learner {
        v1::Learner {
            person: Some(v1::Person {
                learner_id: "id".to_owned(),
                login: "elodie.lefevre".to_owned(),
                family_name: "Lefèvre".to_owned(),
                given_names: "Élodie Marie".to_owned(),
                birth_date: "2001-02-03".to_owned(),
                email: "elodie@example.org".to_owned(),
                ..Default::default()
            }),
            stays,
            version: 3,
            ..Default::default()
        }
    }

    fn values(entry: &Entry, name: &str) -> Vec<String> {
        entry.attributes.get(name).cloned().unwrap_or_default()
    }

    #[test]
    fn an_active_learner() {
        let entry = desired(
            &learner(vec![stay("AX", "2026-09-01", "2027-06-30")]),
            Extras::default(),
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            entry.dn,
            "uid=elodie.lefevre,ou=people,dc=univ-example,dc=fr"
        );
        assert_eq!(values(&entry, "cn"), ["Élodie Marie Lefèvre"]);
        assert_eq!(values(&entry, "displayName"), ["Élodie Lefèvre"]);
        assert_eq!(
            values(&entry, "eduPersonPrincipalName"),
            ["elodie.lefevre@univ-example.fr"]
        );
        assert_eq!(values(&entry, "eduPersonAffiliation"), ["student"]);
        assert_eq!(values(&entry, "supannCodePopulation"), ["AX"]);
        assert_eq!(
            values(&entry, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannActif:20260901:20270630"]
        );
        assert_eq!(values(&entry, "supannNomDeNaissance"), ["Lefèvre"]);
        assert!(!entry.attributes.contains_key("supannCodeINE"));
        assert_eq!(
            values(&entry, "supannExtProfil"),
            [
                "[etab={UAI}0999999F][affil=student][affect=IFSI-NORD][population=AX][datefin=20270630]"
            ]
        );
        // The end of the last day, where the university is (summer time: UTC+2).
        assert_eq!(values(&entry, "supannExtDateFin"), ["20270630220000Z"]);
        assert_eq!(values(&entry, "supannEtablissement"), ["{UAI}0999999F"]);
        assert!(!entry.attributes.contains_key("supannParrainDN"));
        assert!(!entry.attributes.contains_key("eduPersonEntitlement"));
        assert!(!entry.attributes.contains_key("supannRefId"));
    }

    #[test]
    fn grants_in_force_the_card_and_the_sponsor() {
        let mut sponsored = stay("AX", "2026-09-01", "2027-06-30");
        sponsored.sponsor_login = "marie.curie".to_owned();
        let in_force = ["library".to_owned(), "premises:LAB-CHEM".to_owned()];
        let valid_until = time::macros::datetime!(2027-06-30 22:00 UTC);
        let entry = desired(
            &learner(vec![sponsored]),
            Extras {
                in_force: &in_force,
                card: Some(Card {
                    csn: "04A22BCA7C4D80",
                    valid_until: Some(valid_until),
                }),
                ..Extras::default()
            },
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            values(&entry, "eduPersonEntitlement"),
            [
                "urn:mace:univ-example.fr:entitlement:library",
                "urn:mace:univ-example.fr:entitlement:premises:LAB-CHEM"
            ]
        );
        assert_eq!(values(&entry, "supannRefId"), ["{ISO15693}04A22BCA7C4D80"]);
        assert_eq!(values(&entry, "supannCMSId"), ["{ISO15693}04A22BCA7C4D80"]);
        assert_eq!(values(&entry, "supannCMSDateFin"), ["20270630220000Z"]);
        assert_eq!(
            values(&entry, "supannParrainDN"),
            ["uid=marie.curie,ou=people,dc=univ-example,dc=fr"]
        );
        assert_eq!(
            values(&entry, "supannExtProfil"),
            ["[etab={UAI}0999999F][affil=student][affect=IFSI-NORD]\
              [parrain=uid=marie.curie,ou=people,dc=univ-example,dc=fr][population=AX][datefin=20270630]"]
        );
    }

    #[test]
    fn a_sponsor_whose_entry_was_not_found_is_not_named() {
        let mut known = stay("AX", "2026-09-01", "2027-06-30");
        known.sponsor_login = "marie.curie".to_owned();
        let mut unknown = stay("AGG", "2026-09-01", "2027-06-30");
        unknown.sponsor_login = "Nobody.Here".to_owned();
        let without_entry = BTreeSet::from(["nobody.here".to_owned()]);
        let entry = desired(
            &learner(vec![known, unknown]),
            Extras {
                sponsors_without_entry: &without_entry,
                ..Extras::default()
            },
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            values(&entry, "supannParrainDN"),
            ["uid=marie.curie,ou=people,dc=univ-example,dc=fr"]
        );
        assert_eq!(
            values(&entry, "supannExtProfil"),
            [
                "[etab={UAI}0999999F][affil=student][affect=IFSI-NORD]\
                 [parrain=uid=marie.curie,ou=people,dc=univ-example,dc=fr][population=AX][datefin=20270630]",
                "[etab={UAI}0999999F][affil=student][affect=IFSI-NORD][population=AGG][datefin=20270630]"
            ]
        );
        assert_eq!(entry.sponsors_without_entry, ["AGG-2026-09-01"]);
        assert!(entry.withheld.is_empty(), "a valid login: nothing withheld");
    }

    #[test]
    fn account_state_follows_the_dates() {
        let learner = learner(vec![stay("AX", "2026-09-01", "2027-06-30")]);
        let state = |today| {
            values(
                &desired(&learner, Extras::default(), &settings(), today)
                    .unwrap()
                    .unwrap(),
                "supannRessourceEtatDate",
            )
        };
        assert_eq!(
            state(date!(2026 - 08 - 01)),
            ["{COMPTE}A:SupannAnticipe:20260901:20270630"]
        );
        assert_eq!(
            state(date!(2027 - 06 - 30)),
            ["{COMPTE}A:SupannActif:20260901:20270630"]
        );
        // Then the grace period (30 days), the expired account (365 days), the
        // data-deletion deadline (30 days), and the entry goes.
        assert_eq!(
            state(date!(2027 - 07 - 01)),
            ["{COMPTE}A:SupannSursis:20270701:20270730"]
        );
        assert_eq!(
            state(date!(2027 - 07 - 31)),
            ["{COMPTE}I:SupannExpire:20270731:20280729"]
        );
        assert_eq!(
            state(date!(2028 - 07 - 30)),
            ["{COMPTE}I:SupannSupprDonnees:20280730:20280828"]
        );
        assert_eq!(
            desired(
                &learner,
                Extras::default(),
                &settings(),
                date!(2028 - 08 - 29)
            )
            .unwrap(),
            None
        );
        // Each of those days is the next change of the day before.
        let lifecycle = Lifecycle::default();
        let next = |today| next_change(&learner, lifecycle, today);
        assert_eq!(next(date!(2026 - 08 - 01)), Some(date!(2026 - 09 - 01)));
        assert_eq!(next(date!(2026 - 10 - 01)), Some(date!(2027 - 07 - 01)));
        assert_eq!(next(date!(2027 - 07 - 01)), Some(date!(2027 - 07 - 31)));
        assert_eq!(next(date!(2027 - 07 - 31)), Some(date!(2028 - 07 - 30)));
        assert_eq!(next(date!(2028 - 07 - 30)), Some(date!(2028 - 08 - 29)));
        assert_eq!(next(date!(2028 - 08 - 29)), None);
    }

    #[test]
    fn the_heaviest_population_gives_the_primary_affiliation() {
        let entry = desired(
            &learner(vec![
                stay("AX", "2026-09-01", "2027-06-30"),
                stay("RHJCF", "2026-09-01", "2027-01-31"),
            ]),
            Extras::default(),
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(values(&entry, "eduPersonPrimaryAffiliation"), ["faculty"]);
        assert_eq!(
            values(&entry, "eduPersonAffiliation"),
            ["faculty", "member", "researcher", "student"]
        );
        assert_eq!(values(&entry, "supannCodePopulation"), ["AX", "RHJCF"]);
    }

    #[test]
    fn hosted_learners_are_never_members_unless_their_population_says_so() {
        let entry = desired(
            &learner(vec![
                stay("AHH", "2026-09-01", "2027-06-30"),
                stay("AGG", "2026-09-01", "2027-06-30"),
            ]),
            Extras::default(),
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert!(!values(&entry, "eduPersonAffiliation").contains(&"member".to_owned()));
        assert_eq!(values(&entry, "eduPersonPrimaryAffiliation"), ["student"]);
    }

    #[test]
    fn a_stay_to_come_changes_nothing_today_and_everything_on_its_day() {
        // An IFSI student (AX) with a doctoral stay (RHJCF) in 60 days.
        let learner = learner(vec![
            stay("AX", "2026-09-01", "2027-06-30"),
            stay("RHJCF", "2026-11-30", "2027-09-30"),
        ]);
        let on = |today| {
            desired(&learner, Extras::default(), &settings(), today)
                .unwrap()
                .unwrap()
        };
        let today = on(date!(2026 - 10 - 01));
        assert_eq!(values(&today, "supannCodePopulation"), ["AX"]);
        assert_eq!(values(&today, "eduPersonAffiliation"), ["student"]);
        assert_eq!(values(&today, "eduPersonPrimaryAffiliation"), ["student"]);
        assert_eq!(values(&today, "supannExtProfil").len(), 1);
        assert_eq!(
            values(&today, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannActif:20260901:20270630"]
        );
        assert_eq!(values(&today, "supannExtDateFin"), ["20270630220000Z"]);
        // The day the doctoral stay starts is a due day, and changes the entry.
        assert_eq!(
            next_change(&learner, Lifecycle::default(), date!(2026 - 10 - 01)),
            Some(date!(2026 - 11 - 30))
        );
        let then = on(date!(2026 - 11 - 30));
        assert_eq!(values(&then, "supannCodePopulation"), ["AX", "RHJCF"]);
        assert_eq!(values(&then, "eduPersonPrimaryAffiliation"), ["faculty"]);
        assert_eq!(
            values(&then, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannActif:20260901:20270930"]
        );
    }

    #[test]
    fn between_two_stays_grace_then_anticipated() {
        let learner = learner(vec![
            stay("AX", "2026-09-01", "2027-06-30"),
            stay("RHJCF", "2027-10-01", "2028-03-31"),
        ]);
        let on = |today| {
            desired(&learner, Extras::default(), &settings(), today)
                .unwrap()
                .unwrap()
        };
        // Right after the first stay: its grace period, still the first stay's entry.
        let grace = on(date!(2027 - 07 - 10));
        assert_eq!(
            values(&grace, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannSursis:20270701:20270730"]
        );
        assert_eq!(values(&grace, "supannCodePopulation"), ["AX"]);
        assert_eq!(values(&grace, "eduPersonPrimaryAffiliation"), ["student"]);
        // After the grace: anticipated, for the next stay, with its population but no
        // affiliation before it starts.
        let waiting = on(date!(2027 - 08 - 15));
        assert_eq!(
            values(&waiting, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannAnticipe:20271001:20280331"]
        );
        assert_eq!(values(&waiting, "supannCodePopulation"), ["RHJCF"]);
        assert!(!waiting.attributes.contains_key("eduPersonAffiliation"));
        assert!(
            !waiting
                .attributes
                .contains_key("eduPersonPrimaryAffiliation")
        );
        let next = |today| next_change(&learner, Lifecycle::default(), today);
        assert_eq!(next(date!(2027 - 07 - 10)), Some(date!(2027 - 07 - 31)));
        assert_eq!(next(date!(2027 - 08 - 15)), Some(date!(2027 - 10 - 01)));
        // A gap shorter than the grace: in grace until the day before the next stay.
        let close = learner_with_gap("2027-07-10");
        let close_entry = desired(
            &close,
            Extras::default(),
            &settings(),
            date!(2027 - 07 - 05),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            values(&close_entry, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannSursis:20270701:20270709"]
        );
    }

    fn learner_with_gap(next_start: &str) -> v1::Learner {
        learner(vec![
            stay("AX", "2026-09-01", "2027-06-30"),
            stay("AX", next_start, "2028-06-30"),
        ])
    }

    #[test]
    fn an_anticipated_account_says_what_it_will_be_without_affiliations() {
        let entry = desired(
            &learner(vec![stay("AX", "2026-09-01", "2027-06-30")]),
            Extras::default(),
            &settings(),
            date!(2026 - 08 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(values(&entry, "supannCodePopulation"), ["AX"]);
        assert_eq!(values(&entry, "supannExtProfil").len(), 1);
        assert!(!entry.attributes.contains_key("eduPersonAffiliation"));
        assert!(!entry.attributes.contains_key("eduPersonPrimaryAffiliation"));
    }

    #[test]
    fn values_that_could_add_a_key_are_left_out() {
        let mut forged = stay("AX", "2026-09-01", "2027-06-30");
        forged.sponsor_unit = "IFSI][affil=staff".to_owned();
        forged.sponsor_login = "jean,ou=evil".to_owned();
        let mut newline = stay("AGG", "2026-09-01", "2027-06-30");
        newline.sponsor_unit = "IFSI\nNORD".to_owned();
        newline.sponsor_login = "marie.curie".to_owned();
        let entry = desired(
            &learner(vec![forged, newline]),
            Extras {
                in_force: &[],
                card: Some(Card {
                    csn: "04A2][x=y",
                    valid_until: None,
                }),
                ..Extras::default()
            },
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            values(&entry, "supannExtProfil"),
            [
                "[etab={UAI}0999999F][affil=student][population=AX][datefin=20270630]",
                "[etab={UAI}0999999F][affil=student]\
                 [parrain=uid=marie.curie,ou=people,dc=univ-example,dc=fr][population=AGG][datefin=20270630]"
            ]
        );
        assert_eq!(
            values(&entry, "supannParrainDN"),
            ["uid=marie.curie,ou=people,dc=univ-example,dc=fr"]
        );
        assert!(!entry.attributes.contains_key("supannRefId"));
        let withheld: Vec<(&str, &str)> = entry
            .withheld
            .iter()
            .map(|w| (w.stay_id.as_str(), w.what))
            .collect();
        assert_eq!(
            withheld,
            [
                ("", "supannRefId"),
                ("AX-2026-09-01", "supannParrainDN"),
                ("AX-2026-09-01", "supannExtProfil.affect"),
                ("AGG-2026-09-01", "supannExtProfil.affect"),
            ]
        );
    }

    #[test]
    fn a_co_accredited_stay_names_the_partner_institution() {
        let mut co_accredited = stay("AHH", "2026-09-01", "2027-06-30");
        co_accredited.partner_uai = "0134009M".to_owned();
        let mut bad = stay("AX", "2026-09-01", "2027-06-30");
        bad.partner_uai = "0134009M][x".to_owned();
        let entry = desired(
            &learner(vec![co_accredited, bad]),
            Extras::default(),
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            values(&entry, "supannEtablissement"),
            ["{UAI}0999999F", "{UAI}0134009M"]
        );
        assert_eq!(entry.withheld.len(), 1);
        assert_eq!(entry.withheld[0].what, "supannEtablissement");
    }

    #[test]
    fn differences_ignore_order_and_attribute_name_case() {
        let entry = desired(
            &learner(vec![stay("AX", "2026-09-01", "2027-06-30")]),
            Extras::default(),
            &settings(),
            date!(2026 - 10 - 01),
        )
        .unwrap()
        .unwrap();
        let mut actual: HashMap<String, Vec<String>> = entry
            .attributes
            .iter()
            .map(|(name, values)| {
                (
                    name.to_ascii_lowercase(),
                    values.iter().rev().cloned().collect(),
                )
            })
            .collect();
        assert!(differences(&entry, &actual).is_empty());
        actual.insert("mail".to_owned(), vec!["other@example.org".to_owned()]);
        actual.insert("supannCodeINE".to_owned(), vec!["123456789AB".to_owned()]);
        let found: Vec<&str> = differences(&entry, &actual)
            .iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(found, ["mail", "supannCodeINE"]);
    }

    #[test]
    fn a_locked_account_is_suspended_without_entitlements_nor_card_until_unlocked() {
        let settings = settings();
        let mut locked = learner(vec![stay("AX", "2026-09-01", "2027-06-30")]);
        let since =
            settings.clock.start_of(date!(2026 - 10 - 01)) + jiff::SignedDuration::from_hours(10);
        locked.lock = Some(v1::LearnerLock {
            kind: v1::LockKind::Technical.into(),
            reason: "compromised".to_owned(),
            since: Some(hosted_platform::clock::wire_instant(since)),
            by: "dosi".to_owned(),
        });
        let in_force = ["wifi".to_owned()];
        let extras = Extras {
            in_force: &in_force,
            card: Some(Card {
                csn: "04112233445566",
                valid_until: None,
            }),
            ..Extras::default()
        };
        let entry = desired(&locked, extras, &settings, date!(2026 - 10 - 02))
            .unwrap()
            .unwrap();
        assert_eq!(
            values(&entry, "supannRessourceEtatDate"),
            ["{COMPTE}S:SupannVerrouTechnique:20261001:"]
        );
        assert!(values(&entry, "eduPersonEntitlement").is_empty());
        assert!(values(&entry, "supannRefId").is_empty());
        assert_eq!(values(&entry, "uid"), ["elodie.lefevre"], "the entry stays");
        let state = account_state(
            &locked,
            Lifecycle::default(),
            &settings.clock,
            date!(2026 - 10 - 02),
        )
        .unwrap()
        .unwrap();
        assert_eq!(state.state.supann(), ("S", "SupannVerrouTechnique"));
        locked.lock.as_mut().unwrap().kind = v1::LockKind::Administrative.into();
        let administrative = desired(&locked, extras, &settings, date!(2026 - 10 - 02))
            .unwrap()
            .unwrap();
        assert_eq!(
            values(&administrative, "supannRessourceEtatDate"),
            ["{COMPTE}S:SupannVerrouAdministratif:20261001:"]
        );
        locked.lock = None;
        let unlocked = desired(&locked, extras, &settings, date!(2026 - 10 - 02))
            .unwrap()
            .unwrap();
        assert_eq!(
            values(&unlocked, "supannRessourceEtatDate"),
            ["{COMPTE}A:SupannActif:20260901:20270630"]
        );
        assert_eq!(
            values(&unlocked, "eduPersonEntitlement"),
            ["urn:mace:univ-example.fr:entitlement:wifi"]
        );
        assert_eq!(
            values(&unlocked, "supannRefId"),
            ["{ISO15693}04112233445566"]
        );
    }
}
