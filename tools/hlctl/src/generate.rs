//! `hlctl import generate`: a realistic cohort file for tests and benchmarks, with
//! an exact number of rows that must be rejected, each wrong in one way of its own.
//!
//! The same seed, day and options give the same bytes: the draws come from a
//! SplitMix64 of our own rather than from `rand`, whose generators may change their
//! streams from one version to the next. Valid rows are distinct persons for intake,
//! and not near matches of one another either (two persons born the same day are
//! `Different` by intake's own matching rules, from `hosted-identity`; INEs differ),
//! so that a first import of the file into an empty registry creates one learner per
//! valid row.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
use hosted_identity::{Identity, Likeness};
use time::{Date, Duration, Month};

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `,`, `YYYY-MM-DD`, LF line ends, lower-case header.
    Plain,
    /// What a French spreadsheet exports as "CSV UTF-8": byte-order mark, `;`,
    /// `DD/MM/YYYY`, CRLF line ends, header in capitals.
    Spreadsheet,
}

/// How a bad row is wrong: one thing per row, each one intake's rules refuse (but
/// the last, which the reader refuses before sending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// 30 February.
    ImpossibleBirthDate,
    /// Born ten years ago.
    TooYoung,
    MissingEmail,
    /// `@@`, as typed in a hurry.
    InvalidEmail,
    MissingFamilyName,
    BadIne,
    /// Words where a number should be.
    BadPhone,
    UnknownPopulation,
    /// CO_ACCREDITED without an agreement.
    AgreementMissing,
    MissingSponsorUnit,
    EndBeforeStart,
    /// 800 days, more than any population allows.
    TooLong,
    /// Ended 100 days ago.
    Ended,
    /// `Premises`: resource names are in lower case.
    BadRequestedResource,
    /// One field short: unreadable, rejected without being sent.
    MissingField,
}

impl Flaw {
    pub const ALL: [Flaw; 15] = [
        Flaw::ImpossibleBirthDate,
        Flaw::TooYoung,
        Flaw::MissingEmail,
        Flaw::InvalidEmail,
        Flaw::MissingFamilyName,
        Flaw::BadIne,
        Flaw::BadPhone,
        Flaw::UnknownPopulation,
        Flaw::AgreementMissing,
        Flaw::MissingSponsorUnit,
        Flaw::EndBeforeStart,
        Flaw::TooLong,
        Flaw::Ended,
        Flaw::BadRequestedResource,
        Flaw::MissingField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flaw::ImpossibleBirthDate => "impossible_birth_date",
            Flaw::TooYoung => "too_young",
            Flaw::MissingEmail => "missing_email",
            Flaw::InvalidEmail => "invalid_email",
            Flaw::MissingFamilyName => "missing_family_name",
            Flaw::BadIne => "bad_ine",
            Flaw::BadPhone => "bad_phone",
            Flaw::UnknownPopulation => "unknown_population",
            Flaw::AgreementMissing => "agreement_missing",
            Flaw::MissingSponsorUnit => "missing_sponsor_unit",
            Flaw::EndBeforeStart => "end_before_start",
            Flaw::TooLong => "too_long",
            Flaw::Ended => "ended",
            Flaw::BadRequestedResource => "bad_requested_resource",
            Flaw::MissingField => "missing_field",
        }
    }
}

/// A generated file.
#[derive(Debug, Clone)]
pub struct Generated {
    pub bytes: Vec<u8>,
    /// The bad rows: their line in the file and how they are wrong, in line order.
    pub bad: Vec<(u64, Flaw)>,
}

const FAMILY_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefebvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martínez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Masson",
    "Sánchez",
    "Gérard",
    "Nguyen",
    "Boyer",
    "Denis",
    "Lemaire",
    "Duval",
    "Joly",
    "Gautier",
    "Roger",
    "Roche",
    "Roy",
    "Noël",
    "Meyer",
    "Lucas",
    "Meunier",
    "Jean",
    "Pérez",
    "Marchand",
    "Dufour",
    "Blanchard",
    "Marie",
    "Barbier",
    "Brun",
    "Dumas",
    "Brunet",
    "Schmitt",
    "Leroux",
    "Colin",
    "Fernandez",
    "Pierre",
    "Renard",
    "Arnaud",
    "Rolland",
    "Caron",
    "Aubert",
    "Giraud",
    "Leclerc",
    "Vidal",
    "Bourgeois",
    "Renaud",
    "Lemoine",
    "Picard",
    "Gaillard",
    "Philippe",
    "Leclercq",
    "Lacroix",
    "Fabre",
    "Dupuis",
    "Olivier",
    "Rodriguez",
    "Da Silva",
    "Hubert",
    "Louis",
    "Charles",
    "Guillot",
    "Rivière",
    "Le Gall",
    "Guillaume",
    "Adam",
    "Rey",
    "Moulin",
    "Gonzalez",
    "Berger",
    "Lecomte",
    "Ménard",
    "Fleury",
    "Deschamps",
    "Carpentier",
    "Julien",
    "Benoît",
    "Paris",
    "Maillard",
    "Marchal",
    "Aubry",
    "Vasseur",
    "Le Roux",
    "Renault",
    "Jacquet",
    "Collet",
    "Prévost",
    "Poirier",
    "Charpentier",
    "Royer",
    "Huet",
    "Baron",
    "Dupuy",
    "Pons",
    "Paul",
    "Laine",
    "Carré",
    "Breton",
    "Rémy",
    "Schneider",
    "Perrot",
    "Guyot",
    "Barré",
    "Marty",
    "Cousin",
    "D'Arc",
    "D'Almeida",
    "N'Diaye",
    "O'Connor",
    "L'Hôte",
    "Saint-Martin",
    "Dubois-Lefèvre",
    "Le Goff-Kervella",
    "Ben Saïd",
    "Étienne",
    "Lévêque",
    "Lemaître",
    "Bénard",
    "Maréchal",
    "Barthélemy",
    "Müller",
    "Nguyễn",
    "Łukasiewicz",
    "Ødegaard",
    "Çelik",
];

const GIVEN_NAMES: &[&str] = &[
    "Élodie",
    "Amélie",
    "Chloé",
    "Zoé",
    "Léa",
    "Anaïs",
    "Hélène",
    "Noémie",
    "Inès",
    "Maëlle",
    "Jérôme",
    "Frédéric",
    "Grégoire",
    "Joël",
    "Loïc",
    "Anne-Sophie",
    "Marie-Claire",
    "Jean-Baptiste",
    "Pierre-Yves",
    "Aurélien",
    "Benoît",
    "François",
    "Céline",
    "Mathéo",
    "Théo",
    "Raphaël",
    "Gaël",
    "Cécile",
    "Stéphane",
    "Jérémy",
    "Sébastien",
    "Valérie",
    "Thérèse",
    "Agnès",
    "Mélanie",
    "Océane",
    "Léonie",
    "Clémence",
    "Rémi",
    "Timothée",
    "Nathanaël",
    "Hugo",
    "Lucas",
    "Emma",
    "Jade",
    "Louise",
    "Alice",
    "Paul",
    "Louis",
    "Jules",
    "Arthur",
    "Manon",
    "Camille",
    "Sarah",
    "Nicolas",
    "Julien",
    "Thomas",
    "Antoine",
    "Mathilde",
    "Pauline",
    "Marion",
    "Laure",
    "Yannick",
    "Ségolène",
    "Guénolé",
    "Soizic",
    "Aïcha",
    "Fatoumata",
    "Mamadou",
    "Oumar",
    "Ibrahim",
    "Yasmine",
    "Kévin",
    "Maïwenn",
    "Noël",
    "Björn",
    "Zoë",
    "Ana-María",
    "Jean-Noël",
    "Marie-Ève",
];

/// The populations of valid rows, as often as they come in a year's imports.
const POPULATIONS: &[&str] = &[
    "IFSI",
    "IFSI",
    "IFSI",
    "RECTORAT_PAF",
    "RECTORAT_PAF",
    "RECTORAT_C2I2E",
    "SHORT_COURSE_SUFA",
    "SHORT_COURSE_SUFA",
    "VAE",
    "VISITING_DOCTORAL",
    "VISITING_DOCTORAL",
];

/// What the sponsor of a stay of this population asks for, if anything: a lab hosting
/// a doctoral student asks for its premises; the continuing-education service asks
/// for the library and the online resources half the time (the policy grants these
/// to its short courses only when asked). `;` between names, as people write lists:
/// in the spreadsheet layout the writer puts the cell in quotes.
fn requested_resources(population: &str, draw: &mut Draw) -> &'static str {
    match population {
        "VISITING_DOCTORAL" => "premises",
        "SHORT_COURSE_SUFA" if draw.chance(50) => "library; online-resources",
        _ => "",
    }
}

fn sponsor_units(population: &str) -> &'static [&'static str] {
    match population {
        "IFSI" => &["IFSI-NORD", "IFSI-SUD", "IFSI-CHU"],
        "RECTORAT_PAF" | "RECTORAT_C2I2E" => &["INSPE"],
        "SHORT_COURSE_SUFA" => &["SUFA"],
        "VAE" => &["SUFA", "DAVA"],
        _ => &["ED-SPI", "ED-SHS", "ED-SVS", "ED-MSTIC"],
    }
}

const EMAIL_DOMAINS: &[&str] = &[
    "example.org",
    "example.com",
    "example.net",
    "mail.example.org",
];

/// SplitMix64.
#[derive(Debug)]
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `0..bound`; the modulo bias is nothing next to these bounds.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// In `low..=high`.
    fn days(&mut self, low: i64, high: i64) -> Duration {
        let span = usize::try_from(high - low + 1).unwrap_or(1);
        Duration::days(low + self.below(span) as i64)
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn letter(&mut self) -> char {
        char::from(b'A' + self.below(26) as u8)
    }
}

/// A row, in the file's words.
#[derive(Debug, Clone, Default)]
struct Record {
    family_name: String,
    birth_name: String,
    given_names: String,
    birth_date: String,
    email: String,
    ine: String,
    phone: String,
    population: String,
    sponsor_unit: String,
    sponsor_login: String,
    agreement_id: String,
    start_date: String,
    end_date: String,
    requested_resources: String,
}

impl Record {
    /// The columns and their values, as a DEVE export has them (no
    /// `confirm_new_person`: that is added by hand, after an import).
    fn fields(&self) -> [(&'static str, &str); 14] {
        [
            ("family_name", &self.family_name),
            ("birth_name", &self.birth_name),
            ("given_names", &self.given_names),
            ("birth_date", &self.birth_date),
            ("email", &self.email),
            ("ine", &self.ine),
            ("phone", &self.phone),
            ("population", &self.population),
            ("sponsor_unit", &self.sponsor_unit),
            ("sponsor_login", &self.sponsor_login),
            ("agreement_id", &self.agreement_id),
            ("start_date", &self.start_date),
            ("end_date", &self.end_date),
            ("requested_resources", &self.requested_resources),
        ]
    }
}

/// `d-arc`, `le-gall`: a name as the local part of an address.
fn mail_part(name: &str) -> String {
    let mut part = String::new();
    for c in deunicode::deunicode(name).to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            part.push(c);
        } else if !part.is_empty() && !part.ends_with('-') {
            part.push('-');
        }
    }
    part.trim_end_matches('-').to_owned()
}

fn format_day(layout: Layout, year: i32, month: u8, day: u8) -> String {
    match layout {
        Layout::Plain => format!("{year:04}-{month:02}-{day:02}"),
        Layout::Spreadsheet => format!("{day:02}/{month:02}/{year:04}"),
    }
}

fn format_date(layout: Layout, date: Date) -> String {
    format_day(layout, date.year(), u8::from(date.month()), date.day())
}

/// What a valid row is made of, before it is written.
struct Person {
    record: Record,
    birth_date: Date,
    start: Date,
    end: Date,
}

/// Distinct persons and their stays.
struct Cohort {
    draw: Draw,
    today: Date,
    /// The persons drawn, as intake matches them, by birth date.
    born: HashMap<Date, Vec<Identity>>,
    emails: HashSet<String>,
    ines: HashSet<String>,
}

impl Cohort {
    fn person(&mut self) -> anyhow::Result<Person> {
        let oldest = Date::from_calendar_date(1960, Month::January, 1).context("1960")?;
        let youngest = Date::from_calendar_date(2006, Month::December, 31).context("2006")?;
        let span = (youngest - oldest).whole_days();
        // Redrawn until no one born the same day is near: bounded, and far from the
        // bound for any cohort a university has (there are millions of names × days).
        for _ in 0..1000 {
            let family_name = self.draw.pick(FAMILY_NAMES);
            // A married name, with the birth name beside it, now and then.
            let birth_name = if self.draw.chance(8) {
                self.draw.pick(FAMILY_NAMES)
            } else {
                ""
            };
            let first = self.draw.pick(GIVEN_NAMES);
            let given_names = if self.draw.chance(20) {
                format!("{first} {}", self.draw.pick(GIVEN_NAMES))
            } else {
                first.to_owned()
            };
            let birth_date = oldest + self.draw.days(0, span);
            let identity = Identity::new(
                family_name,
                Some(birth_name),
                &given_names,
                birth_date,
                None,
            );
            let same_day = self.born.entry(birth_date).or_default();
            // Neither the same person nor a near match of anyone drawn.
            if same_day
                .iter()
                .any(|other| other.likeness(&identity) != Likeness::Different)
            {
                continue;
            }
            same_day.push(identity);
            let population = self.draw.pick(POPULATIONS);
            let start = self.today + self.draw.days(-30, 30);
            let end = start + self.draw.days(30, 300);
            let record = Record {
                family_name: family_name.to_owned(),
                birth_name: birth_name.to_owned(),
                email: self.email(family_name, first),
                ine: if self.draw.chance(40) {
                    self.ine()
                } else {
                    String::new()
                },
                phone: if self.draw.chance(50) {
                    self.phone()
                } else {
                    String::new()
                },
                given_names,
                population: population.to_owned(),
                sponsor_unit: self.draw.pick(sponsor_units(population)).to_owned(),
                requested_resources: requested_resources(population, &mut self.draw).to_owned(),
                ..Record::default()
            };
            return Ok(Person {
                record,
                birth_date,
                start,
                end,
            });
        }
        bail!("could not draw a new distinct person in 1000 tries")
    }

    fn email(&mut self, family_name: &str, given_name: &str) -> String {
        let local = format!("{}.{}", mail_part(given_name), mail_part(family_name));
        let domain = self.draw.pick(EMAIL_DOMAINS);
        let mut email = format!("{local}@{domain}");
        let mut n = 1;
        while !self.emails.insert(email.clone()) {
            n += 1;
            email = format!("{local}{n}@{domain}");
        }
        email
    }

    /// INE-RNIE (9 digits, 2 letters) or INE-BEA (10 digits, 1 letter), never twice.
    fn ine(&mut self) -> String {
        loop {
            let ine = if self.draw.chance(50) {
                format!(
                    "{}{}{}",
                    self.draw.digits(9),
                    self.draw.letter(),
                    self.draw.letter()
                )
            } else {
                format!("{}{}", self.draw.digits(10), self.draw.letter())
            };
            if self.ines.insert(ine.clone()) {
                return ine;
            }
        }
    }

    fn phone(&mut self) -> String {
        let mobile = if self.draw.chance(50) { '6' } else { '7' };
        let pairs: Vec<String> = (0..4).map(|_| self.draw.digits(2)).collect();
        if self.draw.chance(30) {
            format!("+33 {mobile} {}", pairs.join(" "))
        } else {
            format!("0{mobile} {}", pairs.join(" "))
        }
    }
}

/// Makes a file of `rows` rows of which exactly `bad` are invalid.
pub fn generate(
    rows: usize,
    bad: usize,
    seed: u64,
    today: Date,
    layout: Layout,
) -> anyhow::Result<Generated> {
    if bad > rows {
        bail!("--bad {bad} is more than --rows {rows}");
    }
    let mut cohort = Cohort {
        draw: Draw(seed),
        today,
        born: HashMap::with_capacity(rows),
        emails: HashSet::with_capacity(rows),
        ines: HashSet::new(),
    };
    // Which rows are bad: the first `bad` of a partial shuffle.
    let mut order: Vec<usize> = (0..rows).collect();
    for index in 0..bad {
        let other = index + cohort.draw.below(rows - index);
        order.swap(index, other);
    }
    let mut bad_rows: Vec<usize> = order[..bad].to_vec();
    bad_rows.sort_unstable();
    let first_flaw = cohort.draw.below(Flaw::ALL.len());

    let (separator, terminator) = match layout {
        Layout::Plain => (b',', csv::Terminator::Any(b'\n')),
        Layout::Spreadsheet => (b';', csv::Terminator::CRLF),
    };
    let mut writer = csv::WriterBuilder::new()
        .delimiter(separator)
        .terminator(terminator)
        // The row with a missing field is short on purpose.
        .flexible(true)
        .from_writer(Vec::new());
    writer.write_record(Record::default().fields().map(|(column, _)| match layout {
        Layout::Plain => column.to_owned(),
        Layout::Spreadsheet => column.to_ascii_uppercase(),
    }))?;
    let mut flawed = Vec::with_capacity(bad_rows.len());
    let mut next_bad = bad_rows.iter().peekable();
    for index in 0..rows {
        let person = cohort.person()?;
        let mut record = person.record.clone();
        record.birth_date = format_date(layout, person.birth_date);
        record.start_date = format_date(layout, person.start);
        record.end_date = format_date(layout, person.end);
        // Line numbers as a person counts them: the header is line 1.
        let line = index as u64 + 2;
        let mut fields: Vec<&str> = Vec::new();
        let flaw = if next_bad.next_if(|row| **row == index).is_some() {
            let flaw = Flaw::ALL[(first_flaw + flawed.len()) % Flaw::ALL.len()];
            spoil(&mut record, flaw, &person, today, layout);
            flawed.push((line, flaw));
            Some(flaw)
        } else {
            None
        };
        fields.extend(record.fields().map(|(_, value)| value));
        if flaw == Some(Flaw::MissingField) {
            fields.pop();
        }
        writer.write_record(&fields)?;
    }
    let written = writer
        .into_inner()
        .map_err(|error| error.into_error())
        .context("writing the rows")?;
    let bytes = match layout {
        Layout::Plain => written,
        Layout::Spreadsheet => ["\u{feff}".as_bytes(), &written].concat(),
    };
    Ok(Generated { bytes, bad: flawed })
}

fn spoil(record: &mut Record, flaw: Flaw, person: &Person, today: Date, layout: Layout) {
    match flaw {
        Flaw::ImpossibleBirthDate => {
            record.birth_date = format_day(layout, person.birth_date.year(), 2, 30);
        }
        Flaw::TooYoung => {
            record.birth_date = format_date(layout, today - Duration::days(3650));
        }
        Flaw::MissingEmail => record.email.clear(),
        Flaw::InvalidEmail => record.email = record.email.replacen('@', "@@", 1),
        Flaw::MissingFamilyName => record.family_name.clear(),
        Flaw::BadIne => record.ine = "12345ABC".to_owned(),
        Flaw::BadPhone => record.phone = "voir secrétariat".to_owned(),
        Flaw::UnknownPopulation => record.population = "ERASMUS".to_owned(),
        Flaw::AgreementMissing => record.population = "CO_ACCREDITED".to_owned(),
        Flaw::MissingSponsorUnit => record.sponsor_unit.clear(),
        // Both ahead of today, so that "before the start" is the only thing wrong.
        Flaw::EndBeforeStart => {
            record.start_date = format_date(layout, today + Duration::days(40));
            record.end_date = format_date(layout, today + Duration::days(30));
        }
        Flaw::TooLong => {
            record.end_date = format_date(layout, person.start + Duration::days(800));
        }
        Flaw::Ended => {
            record.start_date = format_date(layout, today - Duration::days(400));
            record.end_date = format_date(layout, today - Duration::days(100));
        }
        Flaw::BadRequestedResource => record.requested_resources = "Premises".to_owned(),
        Flaw::MissingField => {}
    }
}

#[cfg(test)]
mod tests {
    use hosted_contracts::v1;
    use time::macros::date;

    use super::*;
    use crate::csv_rows;

    const TODAY: Date = date!(2026 - 11 - 29);

    fn date(value: &str) -> Option<Date> {
        Date::parse(
            value,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()
    }

    /// Intake's rules as far as generated rows test them, written again here (the
    /// real ones are in the intake service, which this tool does not build) so that
    /// the generator's promise is checked against something independent of it.
    fn intake_accepts(row: &v1::ImportRow) -> bool {
        let (Some(person), Some(stay)) = (&row.person, &row.stay) else {
            return false;
        };
        let max_days = match stay.population.as_str() {
            "RECTORAT_PAF" | "RECTORAT_C2I2E" | "SHORT_COURSE_SUFA" => 366,
            "IFSI" => 400,
            "VAE" | "VISITING_DOCTORAL" => 730,
            _ => return false,
        };
        let email_ok = match person.email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            }
            None => false,
        };
        let ine = person.ine.as_bytes();
        let ine_ok = ine.is_empty()
            || (ine.len() == 11
                && ine[..9].iter().all(u8::is_ascii_digit)
                && ine[9..]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        let phone_ok = person
            .phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
        // Lower-case letters, digits and dashes, not starting with a dash.
        let requested_ok = stay.requested_resources.iter().all(|name| {
            !name.starts_with('-')
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        let youngest = TODAY - Duration::days(14 * 365);
        let birth_ok = date(&person.birth_date).is_some_and(|birth| birth <= youngest);
        let stay_ok = match (date(&stay.start_date), date(&stay.end_date)) {
            (Some(start), Some(end)) => {
                start <= end && (end - start).whole_days() < max_days && end >= TODAY
            }
            _ => false,
        };
        !person.family_name.is_empty()
            && !person.given_names.is_empty()
            && !stay.sponsor_unit.is_empty()
            && email_ok
            && ine_ok
            && phone_ok
            && requested_ok
            && birth_ok
            && stay_ok
    }

    fn invalid_lines(generated: &Generated) -> Vec<u64> {
        csv_rows::parse(&generated.bytes)
            .expect("parsed")
            .rows
            .iter()
            .filter(|row| !row.content.as_ref().is_ok_and(intake_accepts))
            .map(|row| row.line)
            .collect()
    }

    #[test]
    fn exactly_the_bad_rows_are_invalid() {
        for (rows, bad) in [(300, 20), (40, 0), (30, 30), (1, 1)] {
            for layout in [Layout::Plain, Layout::Spreadsheet] {
                let generated = generate(rows, bad, 7, TODAY, layout).expect("generated");
                let file = csv_rows::parse(&generated.bytes).expect("parsed");
                assert_eq!(file.rows.len(), rows);
                let expected: Vec<u64> = generated.bad.iter().map(|(line, _)| *line).collect();
                assert_eq!(expected.len(), bad);
                assert_eq!(
                    invalid_lines(&generated),
                    expected,
                    "{rows} {bad} {layout:?}"
                );
            }
        }
    }

    #[test]
    fn every_flaw_appears_when_there_are_enough_bad_rows() {
        let generated = generate(100, 20, 3, TODAY, Layout::Plain).expect("generated");
        for flaw in Flaw::ALL {
            assert!(
                generated.bad.iter().any(|(_, bad)| *bad == flaw),
                "{flaw:?}"
            );
        }
    }

    #[test]
    fn valid_rows_are_distinct_persons() {
        let generated = generate(3000, 30, 11, TODAY, Layout::Plain).expect("generated");
        let file = csv_rows::parse(&generated.bytes).expect("parsed");
        let (mut ines, mut emails) = (HashSet::new(), HashSet::new());
        let mut born: HashMap<String, Vec<Identity>> = HashMap::new();
        let mut valid = 0;
        for row in file.readable().filter(|row| intake_accepts(row)) {
            let person = row.person.clone().expect("person");
            let identity = Identity::new(
                &person.family_name,
                Some(&person.birth_name),
                &person.given_names,
                date(&person.birth_date).expect("birth date"),
                None,
            );
            let same_day = born.entry(person.birth_date.clone()).or_default();
            for other in same_day.iter() {
                assert_eq!(
                    other.likeness(&identity),
                    Likeness::Different,
                    "{person:?} is near {other:?}"
                );
            }
            same_day.push(identity);
            assert!(
                person.ine.is_empty() || ines.insert(person.ine.clone()),
                "{person:?}"
            );
            assert!(emails.insert(person.email.clone()), "{person:?}");
            valid += 1;
        }
        assert_eq!(valid, 2970);
        // Many share a birthday: the near-match rule was exercised.
        assert!(born.len() < valid);
        let text = String::from_utf8(generated.bytes).expect("UTF-8");
        for sign in ['é', '\'', '-', 'ï'] {
            assert!(text.contains(sign), "no {sign:?} in the names");
        }
    }

    #[test]
    fn a_seed_gives_the_same_file() {
        let first = generate(200, 10, 42, TODAY, Layout::Plain).expect("generated");
        let again = generate(200, 10, 42, TODAY, Layout::Plain).expect("generated");
        let other = generate(200, 10, 43, TODAY, Layout::Plain).expect("generated");
        assert_eq!(first.bytes, again.bytes);
        assert_eq!(first.bad, again.bad);
        assert_ne!(first.bytes, other.bytes);
    }

    #[test]
    fn both_layouts_read_the_same() {
        let plain = generate(100, 15, 5, TODAY, Layout::Plain).expect("generated");
        let spreadsheet = generate(100, 15, 5, TODAY, Layout::Spreadsheet).expect("generated");
        assert!(
            spreadsheet
                .bytes
                .starts_with("\u{feff}FAMILY_NAME;".as_bytes())
        );
        let plain = csv_rows::parse(&plain.bytes).expect("parsed");
        let spreadsheet = csv_rows::parse(&spreadsheet.bytes).expect("parsed");
        assert_eq!(plain.separator, b',');
        assert_eq!(spreadsheet.separator, b';');
        assert_eq!(plain.rows, spreadsheet.rows);
    }

    #[test]
    fn stays_are_around_today() {
        let generated = generate(500, 0, 9, TODAY, Layout::Plain).expect("generated");
        for row in csv_rows::parse(&generated.bytes)
            .expect("parsed")
            .readable()
        {
            let stay = row.stay.clone().expect("stay");
            let (Some(start), Some(end)) = (date(&stay.start_date), date(&stay.end_date)) else {
                panic!("{stay:?}");
            };
            assert!((TODAY - start).whole_days().abs() <= 30, "{stay:?}");
            assert!((30..=300).contains(&(end - start).whole_days()), "{stay:?}");
            assert!(stay.population != "CO_ACCREDITED", "{stay:?}");
        }
    }

    #[test]
    fn sponsors_ask_for_what_their_population_needs() {
        let generated = generate(300, 0, 13, TODAY, Layout::Spreadsheet).expect("generated");
        let mut asked_by = HashMap::<String, HashSet<Vec<String>>>::new();
        for row in csv_rows::parse(&generated.bytes)
            .expect("parsed")
            .readable()
        {
            let stay = row.stay.clone().expect("stay");
            asked_by
                .entry(stay.population)
                .or_default()
                .insert(stay.requested_resources);
        }
        let asked = |population: &str| {
            let mut lists: Vec<Vec<String>> = asked_by[population].iter().cloned().collect();
            lists.sort();
            lists
        };
        assert_eq!(asked("VISITING_DOCTORAL"), [vec!["premises".to_owned()]]);
        assert_eq!(
            asked("SHORT_COURSE_SUFA"),
            [
                Vec::new(),
                vec!["library".to_owned(), "online-resources".to_owned()]
            ]
        );
        assert_eq!(asked("IFSI"), [Vec::<String>::new()]);
    }

    #[test]
    fn the_documented_example_has_one_invalid_row() {
        // docs/cohort-import.md says which row of the example is wrong, and why.
        let file = csv_rows::parse(include_bytes!("../../../docs/examples/cohort-example.csv"))
            .expect("parsed");
        assert_eq!(file.rows.len(), 10);
        let invalid: Vec<u64> = file
            .rows
            .iter()
            .filter(|row| !row.content.as_ref().is_ok_and(intake_accepts))
            .map(|row| row.line)
            .collect();
        assert_eq!(invalid, [9]);
        let stay = file.rows[7]
            .content
            .clone()
            .expect("readable")
            .stay
            .expect("stay");
        assert!(stay.end_date < stay.start_date, "{stay:?}");
    }

    #[test]
    fn more_bad_rows_than_rows_is_refused() {
        assert!(generate(5, 6, 1, TODAY, Layout::Plain).is_err());
    }
}
