//! `hlctl learner`: show one learner, search them, correct a person's identity data.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Context;
use clap::Subcommand;
use hosted_contracts::v1::{self, get_learner_request::Key};
pub use hosted_platform::personal_data::learner_json;
use hosted_platform::personal_data::{early_end_code, lock_kind};
use serde_json::json;

use crate::{
    rpc::{Intake, server_error, usage},
    values,
};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct LearnerArgs {
    /// Shows this learner: login, hosted-learner number or id (roles deve, dosi).
    key: Option<String>,
    #[command(subcommand)]
    action: Option<LearnerAction>,
}

#[derive(Debug, Subcommand)]
pub enum LearnerAction {
    /// Shows a learner, as `hlctl learner KEY` does (roles deve, dosi).
    Show {
        /// Login, hosted-learner number or id.
        key: String,
    },
    /// Finds learners; every filter given must match, and at least one is needed
    /// (roles deve, dosi).
    Search(SearchArgs),
    /// Who a login or learner id is: login, display name and validity, nothing else
    /// of the person (roles integrator, deve, dosi).
    Identify {
        /// Login or learner id.
        key: String,
    },
    /// Corrects a person's identity data; the other fields keep their value (role
    /// deve).
    Amend(AmendArgs),
    /// Locks (suspends) a learner at once: Check denies every resource, grants close,
    /// the directory entry is suspended, the card stops (roles deve, dosi).
    Lock(LockArgs),
    /// Lifts a learner's lock: what their stays give comes back (roles deve, dosi).
    Unlock(UnlockArgs),
}

#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The learner: login or id.
    #[arg(value_name = "LEARNER")]
    learner: String,
    /// Why: misconduct, fraud, unpaid (an administrative lock), compromised or
    /// namesake (technical).
    #[arg(long, value_parser = ["misconduct", "fraud", "unpaid", "compromised", "namesake"])]
    reason: String,
    /// Free text for the audit trail (never published), e.g. a case number.
    #[arg(long, default_value = "")]
    note: String,
}

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The learner: login or id.
    #[arg(value_name = "LEARNER")]
    learner: String,
    /// Free text for the audit trail.
    #[arg(long, default_value = "")]
    note: String,
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Words of the family, birth or given names; accents and case do not matter.
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    login: Option<String>,
    /// Hosted-learner number, e.g. H00000042.
    #[arg(long)]
    number: Option<String>,
    /// National student number (INE).
    #[arg(long)]
    ine: Option<String>,
    /// Population code (see `hlctl populations`).
    #[arg(long)]
    population: Option<String>,
    /// Agreement id: learners with a stay under it.
    #[arg(long, value_name = "ID")]
    agreement: Option<String>,
    /// Sponsor unit, e.g. INSPE.
    #[arg(long)]
    unit: Option<String>,
    /// Only learners with a stay covering this day (YYYY-MM-DD).
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    active_on: Option<String>,
    /// At most this many learners; 0 for every one that matches.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct AmendArgs {
    /// The learner: id, login or hosted-learner number.
    #[arg(value_name = "LEARNER")]
    learner: String,
    /// The version the correction is based on (`hlctl learner KEY` shows it);
    /// intake refuses it (ABORTED) if the learner has changed since. Default: the
    /// current version, read just before.
    #[arg(long, value_name = "VERSION")]
    expected_version: Option<i64>,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    changes: PersonChanges,
}

/// The identity fields to correct. Intake keeps the value of a field sent empty, so
/// a field cannot be emptied this way.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PersonChanges {
    #[arg(long)]
    pub family_name: Option<String>,
    #[arg(long)]
    pub birth_name: Option<String>,
    #[arg(long)]
    pub given_names: Option<String>,
    /// YYYY-MM-DD
    #[arg(long, value_parser = values::day)]
    pub birth_date: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub ine: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
}

impl PersonChanges {
    /// The correction as AmendPerson takes it: the fields given, the others empty
    /// (intake keeps those). A correction with nothing in it, or one that tries to
    /// empty a field, is a usage error rather than a call that would change nothing.
    pub fn person_input(&self) -> anyhow::Result<v1::PersonInput> {
        let fields = [
            ("--family-name", &self.family_name),
            ("--birth-name", &self.birth_name),
            ("--given-names", &self.given_names),
            ("--birth-date", &self.birth_date),
            ("--email", &self.email),
            ("--ine", &self.ine),
            ("--phone", &self.phone),
        ];
        if fields.iter().all(|(_, value)| value.is_none()) {
            let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
            return usage(format!(
                "nothing to amend: give at least one of {}",
                names.join(", ")
            ));
        }
        if let Some((name, _)) = fields
            .iter()
            .find(|(_, value)| value.as_deref().is_some_and(|v| v.trim().is_empty()))
        {
            return usage(format!(
                "{name} is empty: intake keeps a field sent empty, it cannot be cleared this way"
            ));
        }
        let given = |value: &Option<String>| value.clone().unwrap_or_default();
        Ok(v1::PersonInput {
            family_name: given(&self.family_name),
            birth_name: given(&self.birth_name),
            given_names: given(&self.given_names),
            birth_date: given(&self.birth_date),
            email: given(&self.email),
            ine: given(&self.ine),
            phone: given(&self.phone),
        })
    }
}

/// How intake is asked for a learner: an id looks like a UUID, a hosted-learner
/// number starts with its capital letter prefix, anything else is a login (always
/// lower case).
pub fn learner_key(key: &str) -> Key {
    let key = key.trim().to_owned();
    if key.len() == 36 && key.chars().filter(|c| *c == '-').count() == 4 {
        Key::LearnerId(key)
    } else if key.starts_with(|c: char| c.is_ascii_uppercase()) {
        Key::LearnerNumber(key)
    } else {
        Key::Login(key)
    }
}

pub async fn run(args: LearnerArgs, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    match (args.action, args.key) {
        (Some(LearnerAction::Show { key }), _) | (None, Some(key)) => {
            let learner = get(intake, &key).await?;
            print_learner(&learner, json);
            Ok(())
        }
        (Some(LearnerAction::Search(search_args)), _) => search(search_args, intake, json).await,
        (Some(LearnerAction::Identify { key }), _) => identify(intake, &key, json).await,
        (Some(LearnerAction::Amend(amend_args)), _) => amend(amend_args, intake, json).await,
        (Some(LearnerAction::Lock(lock_args)), _) => {
            let answer = intake
                .client()
                .await?
                .lock_learner(v1::LockLearnerRequest {
                    learner: lock_args.learner,
                    reason: lock_args.reason,
                    note: lock_args.note,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            print_locking(
                answer.learner.unwrap_or_default(),
                answer.changed,
                "locked",
                "already locked for this reason",
                json,
            );
            Ok(())
        }
        (Some(LearnerAction::Unlock(unlock_args)), _) => {
            let answer = intake
                .client()
                .await?
                .unlock_learner(v1::UnlockLearnerRequest {
                    learner: unlock_args.learner,
                    note: unlock_args.note,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            print_locking(
                answer.learner.unwrap_or_default(),
                answer.changed,
                "unlocked",
                "not locked",
                json,
            );
            Ok(())
        }
        (None, None) => usage("give a learner (login, number or id) or a subcommand"),
    }
}

async fn identify(intake: &mut Intake, key: &str, json: bool) -> anyhow::Result<()> {
    use v1::identify_learner_request::Key as IdentityKey;
    let key = match learner_key(key) {
        Key::LearnerId(id) => IdentityKey::LearnerId(id),
        Key::Login(login) => IdentityKey::Login(login),
        Key::LearnerNumber(_) => {
            return usage(
                "give a login or a learner id: a hosted-learner number is not an identity key",
            );
        }
    };
    let identity = intake
        .client()
        .await?
        .identify_learner(v1::IdentifyLearnerRequest { key: Some(key) })
        .await
        .map_err(server_error)?
        .into_inner()
        .identity
        .unwrap_or_default();
    if json {
        println!("{}", identity_json(&identity));
    } else {
        println!("{}", identity_line(&identity));
    }
    Ok(())
}

pub fn identity_json(identity: &v1::LearnerIdentity) -> serde_json::Value {
    json!({
        "learner_id": identity.learner_id,
        "login": identity.login,
        "display_name": identity.display_name,
        "valid_from": identity.valid_from,
        "valid_until": identity.valid_until,
        "current": identity.current,
    })
}

/// Login, display name, and the validity: `valid 2026-09-01..2027-06-30 (current)`.
pub fn identity_line(identity: &v1::LearnerIdentity) -> String {
    let validity = if identity.valid_from.is_empty() {
        "no stay".to_owned()
    } else {
        format!(
            "valid {}..{} ({})",
            identity.valid_from,
            identity.valid_until,
            if identity.current {
                "current"
            } else {
                "not current"
            }
        )
    };
    format!(
        "{:<24} {:<32} {validity}",
        identity.login, identity.display_name
    )
}

pub async fn get(intake: &mut Intake, key: &str) -> anyhow::Result<v1::Learner> {
    Ok(intake
        .client()
        .await?
        .get_learner(v1::GetLearnerRequest {
            key: Some(learner_key(key)),
        })
        .await
        .map_err(server_error)?
        .into_inner()
        .learner
        .unwrap_or_default())
}

/// Intake's largest page.
const MAX_PAGE_SIZE: usize = 500;

async fn search(args: SearchArgs, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    let text = |value: Option<String>| value.unwrap_or_default();
    let mut request = v1::SearchLearnersRequest {
        name: text(args.name),
        login: text(args.login),
        learner_number: text(args.number),
        ine: text(args.ine),
        population: text(args.population),
        agreement_id: text(args.agreement),
        sponsor_unit: text(args.unit),
        active_on: text(args.active_on),
        page_size: 0,
        page_token: String::new(),
    };
    let mut shown = 0usize;
    // Pages are printed as they come: `--limit 0` over a large registry starts
    // answering at once and holds one page at a time.
    let more = loop {
        let wanted = match args.limit {
            0 => MAX_PAGE_SIZE,
            limit => (limit - shown).min(MAX_PAGE_SIZE),
        };
        request.page_size = i32::try_from(wanted).context("page size")?;
        let page = intake
            .client()
            .await?
            .search_learners(request.clone())
            .await
            .map_err(server_error)?
            .into_inner();
        for learner in page.learners.iter().take(wanted) {
            if json {
                println!("{}", learner_json(learner));
            } else {
                println!("{}", search_line(learner));
            }
            shown += 1;
        }
        if page.next_page_token.is_empty() {
            break false;
        }
        if args.limit != 0 && shown >= args.limit {
            break true;
        }
        request.page_token = page.next_page_token;
    };
    if shown == 0 {
        eprintln!("no learner matches");
    } else if more {
        eprintln!("more learners match: the first {shown} are shown (--limit N, 0 for all)");
    }
    Ok(())
}

/// One line per learner: login, number, names, and the populations of the stays
/// that are current (or about to be).
pub fn search_line(learner: &v1::Learner) -> String {
    let person = learner.person.clone().unwrap_or_default();
    let stays: Vec<String> = learner
        .stays
        .iter()
        .filter_map(|stay| match stay.status() {
            v1::StayStatus::Active => Some(format!("{} until {}", stay.population, stay.end_date)),
            v1::StayStatus::Upcoming => {
                Some(format!("{} from {}", stay.population, stay.start_date))
            }
            _ => None,
        })
        .collect();
    let names = format!("{} {}", person.given_names, person.family_name);
    format!(
        "{:<24} {:<12} {:<32} {}",
        person.login,
        person.learner_number,
        names,
        if stays.is_empty() {
            "no current stay".to_owned()
        } else {
            stays.join(", ")
        }
    )
}

async fn amend(args: AmendArgs, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    let person = args.changes.person_input()?;
    let (learner_id, expected_version) = match (learner_key(&args.learner), args.expected_version) {
        (Key::LearnerId(id), Some(version)) => (id, version),
        _ => {
            let current = get(intake, &args.learner)
                .await
                .context("reading the learner")?;
            let id = current.person.unwrap_or_default().learner_id;
            (id, args.expected_version.unwrap_or(current.version))
        }
    };
    let learner = intake
        .client()
        .await?
        .amend_person(v1::AmendPersonRequest {
            learner_id,
            expected_version,
            person: Some(person),
            reason: args.reason,
        })
        .await
        .map_err(server_error)?
        .into_inner()
        .learner
        .unwrap_or_default();
    if !json {
        println!("amended:");
    }
    print_learner(&learner, json);
    Ok(())
}

/// A lock's or an unlock's answer: whether it changed anything, then the learner.
fn print_locking(learner: v1::Learner, changed: bool, done: &str, unchanged: &str, json: bool) {
    if json {
        println!(
            "{}",
            json!({ "changed": changed, "learner": learner_json(&learner) })
        );
        return;
    }
    println!("{}:", if changed { done } else { unchanged });
    print_learner(&learner, false);
}

pub fn print_learner(learner: &v1::Learner, as_json: bool) {
    if as_json {
        println!("{}", learner_json(learner));
    } else {
        print!("{}", learner_text(learner));
    }
}

/// A learner for people: identity, version, then each stay on a line of its own
/// with what there is to say about it below (agreement, the sponsor's requests,
/// why it ended early).
pub fn learner_text(learner: &v1::Learner) -> String {
    let mut lines = Vec::new();
    let person = learner.person.clone().unwrap_or_default();
    lines.push(format!(
        "{}  {}  {}",
        person.login, person.learner_number, person.learner_id
    ));
    let birth_name = if person.birth_name.is_empty() {
        String::new()
    } else {
        format!(", birth name {}", person.birth_name)
    };
    lines.push(format!(
        "  {} {}{birth_name} (born {})",
        person.given_names, person.family_name, person.birth_date
    ));
    let mut contact = vec![person.email];
    if !person.ine.is_empty() {
        contact.push(format!("INE {}", person.ine));
    }
    if !person.phone.is_empty() {
        contact.push(person.phone);
    }
    lines.push(format!("  {}", contact.join("  ")));
    lines.push(format!("  version {}", learner.version));
    if let Some(lock) = &learner.lock {
        let since = lock
            .since
            .as_ref()
            .map(|at| format!(" since {}", values::instant(at.seconds, at.nanos)))
            .unwrap_or_default();
        lines.push(format!(
            "  LOCKED ({} lock: {}){since} by {}",
            lock_kind(lock),
            lock.reason,
            lock.by
        ));
    }
    for stay in &learner.stays {
        let payment = match stay.payment_status() {
            v1::PaymentStatus::Due => ", payment due",
            v1::PaymentStatus::Paid => ", paid",
            _ => "",
        };
        lines.push(format!(
            "  stay {} {} {}..{} {} ({}{payment})",
            stay.stay_id,
            stay.population,
            stay.start_date,
            stay.end_date,
            stay.status().as_str_name(),
            stay.sponsor_unit
        ));
        if !stay.agreement_id.is_empty() {
            lines.push(format!("    under agreement {}", stay.agreement_id));
        }
        if !stay.requested_resources.is_empty() {
            lines.push(format!(
                "    requested resources: {}",
                stay.requested_resources.join(", ")
            ));
        }
        if let Some(code) = early_end_code(stay) {
            lines.push(format!("    ended early: {code}"));
        }
        if !stay.end_reason.is_empty() {
            lines.push(format!("    end reason: {}", stay.end_reason));
        }
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Usage;

    #[test]
    fn an_identity_reads_as_one_line() {
        let mut identity = v1::LearnerIdentity {
            learner_id: "id".to_owned(),
            login: "elodie.lefevre".to_owned(),
            display_name: "Élodie Lefèvre".to_owned(),
            valid_from: "2026-09-01".to_owned(),
            valid_until: "2027-06-30".to_owned(),
            current: true,
            erased_at: None,
        };
        assert!(identity_line(&identity).ends_with("valid 2026-09-01..2027-06-30 (current)"));
        assert_eq!(identity_json(&identity)["current"], true);
        identity.valid_from.clear();
        identity.valid_until.clear();
        identity.current = false;
        assert!(identity_line(&identity).ends_with(" no stay"));
    }

    #[test]
    fn keys_are_ids_numbers_or_logins() {
        assert_eq!(
            learner_key("0190d3a4-5b6c-7d8e-9f00-112233445566"),
            Key::LearnerId("0190d3a4-5b6c-7d8e-9f00-112233445566".to_owned())
        );
        assert_eq!(
            learner_key("H2026000042"),
            Key::LearnerNumber("H2026000042".to_owned())
        );
        assert_eq!(
            learner_key(" elodie.lefevre "),
            Key::Login("elodie.lefevre".to_owned())
        );
    }

    #[test]
    fn an_amendment_sends_only_what_is_given() {
        let changes = PersonChanges {
            email: Some("new@example.org".to_owned()),
            birth_date: Some("2001-02-04".to_owned()),
            ..PersonChanges::default()
        };
        let Ok(person) = changes.person_input() else {
            panic!("a valid amendment");
        };
        assert_eq!(
            person,
            v1::PersonInput {
                email: "new@example.org".to_owned(),
                birth_date: "2001-02-04".to_owned(),
                ..v1::PersonInput::default()
            }
        );
    }

    #[test]
    fn an_amendment_of_nothing_or_to_nothing_is_a_usage_error() {
        let is_usage = |changes: PersonChanges| {
            changes
                .person_input()
                .err()
                .and_then(|error| error.downcast::<Usage>().ok())
                .map(|Usage(message)| message)
        };
        let nothing = is_usage(PersonChanges::default());
        assert!(
            nothing
                .as_deref()
                .is_some_and(|message| message.starts_with("nothing to amend")),
            "{nothing:?}"
        );
        let emptied = is_usage(PersonChanges {
            phone: Some(" ".to_owned()),
            email: Some("a@example.org".to_owned()),
            ..PersonChanges::default()
        });
        assert!(
            emptied
                .as_deref()
                .is_some_and(|message| message.starts_with("--phone is empty")),
            "{emptied:?}"
        );
    }

    fn sponsored_stay(requested_resources: &[&str]) -> v1::Learner {
        v1::Learner {
            person: Some(v1::Person {
                login: "yanis.haddad".to_owned(),
                ..v1::Person::default()
            }),
            stays: vec![v1::Stay {
                stay_id: "s-1".to_owned(),
                population: "VISITING_DOCTORAL".to_owned(),
                sponsor_unit: "LAB-CHEM".to_owned(),
                requested_resources: requested_resources
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect(),
                ..v1::Stay::default()
            }],
            ..v1::Learner::default()
        }
    }

    #[test]
    fn a_stays_requested_resources_are_shown_when_there_are_some() {
        let asking = sponsored_stay(&["library", "premises"]);
        let text = learner_text(&asking);
        assert!(
            text.contains(" (LAB-CHEM)\n    requested resources: library, premises\n"),
            "{text}"
        );
        assert_eq!(
            learner_json(&asking)["stays"][0]["requested_resources"],
            json!(["library", "premises"])
        );
        let silent = sponsored_stay(&[]);
        let text = learner_text(&silent);
        assert!(!text.contains("requested"), "{text}");
        assert_eq!(
            learner_json(&silent)["stays"][0]["requested_resources"],
            json!([])
        );
    }

    #[test]
    fn a_lock_is_shown_with_its_kind_reason_and_who() {
        let mut learner = sponsored_stay(&[]);
        learner.lock = Some(v1::LearnerLock {
            kind: v1::LockKind::Technical.into(),
            reason: "compromised".to_owned(),
            since: None,
            by: "dosi".to_owned(),
        });
        let text = learner_text(&learner);
        assert!(
            text.contains("\n  LOCKED (technical lock: compromised) by dosi\n"),
            "{text}"
        );
        assert_eq!(
            learner_json(&learner)["lock"]["reason"],
            json!("compromised")
        );
        assert_eq!(learner_json(&sponsored_stay(&[]))["lock"], json!(null));
    }

    #[test]
    fn search_lines_show_the_current_stays() {
        let stay = |population: &str, status: v1::StayStatus| v1::Stay {
            population: population.to_owned(),
            start_date: "2027-01-01".to_owned(),
            end_date: "2027-06-30".to_owned(),
            status: status.into(),
            ..v1::Stay::default()
        };
        let learner = v1::Learner {
            person: Some(v1::Person {
                login: "elodie.lefevre".to_owned(),
                learner_number: "H2026000001".to_owned(),
                given_names: "Élodie".to_owned(),
                family_name: "Lefèvre".to_owned(),
                ..v1::Person::default()
            }),
            stays: vec![
                stay("IFSI", v1::StayStatus::Active),
                stay("VAE", v1::StayStatus::Ended),
                stay("VISITING_DOCTORAL", v1::StayStatus::Upcoming),
            ],
            ..v1::Learner::default()
        };
        let line = search_line(&learner);
        assert!(line.starts_with("elodie.lefevre "), "{line}");
        assert!(line.contains(" H2026000001 "), "{line}");
        assert!(line.contains("Élodie Lefèvre"), "{line}");
        assert!(
            line.ends_with("IFSI until 2027-06-30, VISITING_DOCTORAL from 2027-01-01"),
            "{line}"
        );
        let no_stay = search_line(&v1::Learner::default());
        assert!(no_stay.ends_with("no current stay"), "{no_stay}");
    }
}
