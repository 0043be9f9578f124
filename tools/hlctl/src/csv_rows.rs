//! Reading a cohort file: the CSV that DEVE exports from a spreadsheet, one stay per
//! row, turned into the rows of `IntakeService.ImportStays`.
//!
//! Only what makes a row unreadable is judged here (a wrong number of fields, bytes
//! that are not UTF-8, a cell in the file's own notation that cannot be read: a
//! `confirm_new_person` neither yes nor no, a list of `requested_resources` split
//! with commas): every other rule is intake's, so that it lives in one place
//! and the operator reads the same reasons as for a registration by hand. What a
//! spreadsheet does to a file is undone here instead: a byte-order mark, `;` as the
//! separator, `DD/MM/YYYY` dates, spaces around values.

use anyhow::{Context, bail};
use hosted_contracts::v1;

/// Every column a cohort file may have, named as `PersonInput`, `StayInput` and
/// `ImportRow` name the fields, so that a reason from intake points at the column to
/// fix.
pub const COLUMNS: [&str; 15] = [
    "family_name",
    "birth_name",
    "given_names",
    "birth_date",
    "email",
    "ine",
    "phone",
    "population",
    "sponsor_unit",
    "sponsor_login",
    "agreement_id",
    "start_date",
    "end_date",
    // The resources the sponsor asks for, several in one cell: see
    // `requested_resources`.
    "requested_resources",
    // "yes" registers a new person even though intake found a near match, once
    // someone has checked that it is not the same person.
    "confirm_new_person",
];

/// The columns without which no row could be valid: their absence is the file's
/// fault, not each row's, so it stops the import before anything is sent.
pub const REQUIRED_COLUMNS: [&str; 8] = [
    "family_name",
    "given_names",
    "birth_date",
    "email",
    "population",
    "sponsor_unit",
    "start_date",
    "end_date",
];

const DATE_COLUMNS: [&str; 3] = ["birth_date", "start_date", "end_date"];

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a row, or one of its fields, was rejected: `field` is a column name (or
/// `row` for the row as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: String,
    pub reason: String,
}

impl RowError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// One data row of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortRow {
    /// The line the row starts on, as a person counts them: the header is line 1.
    pub line: u64,
    /// The row to send (its `row_number` is `line`), or why it could not be read.
    pub content: Result<v1::ImportRow, Vec<RowError>>,
}

/// A cohort file as read.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortFile {
    /// `b','` or `b';'`, as the header line shows; the results file uses it too.
    pub separator: u8,
    /// Whether the file began with a UTF-8 byte-order mark (Excel's "CSV UTF-8" does).
    pub bom: bool,
    pub rows: Vec<CohortRow>,
}

impl CohortFile {
    /// The rows that will be sent.
    pub fn readable(&self) -> impl Iterator<Item = &v1::ImportRow> {
        self.rows.iter().filter_map(|row| row.content.as_ref().ok())
    }
}

/// Reads a whole cohort file. An error here concerns the file as a whole (no header,
/// an unknown or a missing column…): nothing may be sent.
pub fn parse(bytes: &[u8]) -> anyhow::Result<CohortFile> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        bail!("the file is UTF-16: save it as \"CSV UTF-8\"");
    }
    let bom = bytes.starts_with(UTF8_BOM);
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let separator = detect_separator(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator)
        .has_headers(false)
        // A row with a wrong number of fields is that row's problem, not the file's.
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    if !reader
        .read_byte_record(&mut record)
        .context("reading the header")?
    {
        bail!(
            "the file is empty: the first line must name the columns ({})",
            COLUMNS.join(", ")
        );
    }
    let columns = read_header(&record)?;
    let mut lines = LineCounter::default();
    let mut rows = Vec::new();
    while reader
        .read_byte_record(&mut record)
        .context("reading the file")?
    {
        let line = lines.line_at(bytes, record.position().map_or(0, csv::Position::byte));
        // Spreadsheets export the empty rows under a table as lines of separators.
        if record.iter().all(|field| field.trim_ascii().is_empty()) {
            continue;
        }
        let content = read_row(&columns, &record, line)?;
        rows.push(CohortRow { line, content });
    }
    Ok(CohortFile {
        separator,
        bom,
        rows,
    })
}

/// Line numbers from byte offsets. The reader's own line count lags by one after a
/// CRLF line end (it counts the `\n` when the next record begins), and spreadsheets
/// on Windows write CRLF. A line ends as the reader ends a record: `\n`, `\r\n`, or
/// a `\r` alone (old Mac spreadsheets write CR).
#[derive(Debug, Default)]
struct LineCounter {
    offset: usize,
    /// Line ends before `offset`.
    newlines: u64,
}

impl LineCounter {
    /// The line of the record that starts at `offset` (or at the line ends after it).
    fn line_at(&mut self, bytes: &[u8], offset: u64) -> u64 {
        let mut offset = usize::try_from(offset)
            .unwrap_or(bytes.len())
            .min(bytes.len());
        while bytes
            .get(offset)
            .is_some_and(|byte| matches!(byte, b'\r' | b'\n'))
        {
            offset += 1;
        }
        if offset >= self.offset {
            let newlines = line_ends(&bytes[self.offset..offset]);
            self.newlines += newlines as u64;
            self.offset = offset;
        }
        self.newlines + 1
    }
}

/// How many lines `bytes` ends: each `\n`, and each `\r` not followed by `\n`.
fn line_ends(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|(index, byte)| {
            **byte == b'\n' || (**byte == b'\r' && bytes.get(index + 1) != Some(&b'\n'))
        })
        .count()
}

/// `;` when the header line has more of them than commas (outside quotes): French
/// spreadsheets export `;` because `,` is their decimal mark.
fn detect_separator(bytes: &[u8]) -> u8 {
    let header = bytes
        .split(|byte| *byte == b'\n')
        .find(|line| !line.trim_ascii().is_empty())
        .unwrap_or_default();
    let (mut commas, mut semicolons, mut quoted) = (0usize, 0usize, false);
    for byte in header {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas { b';' } else { b',' }
}

/// The column each field of a row goes to; `None` for a column without a name, which
/// spreadsheets leave after a table and which may only hold empty cells.
fn read_header(record: &csv::ByteRecord) -> anyhow::Result<Vec<Option<&'static str>>> {
    let mut columns = Vec::with_capacity(record.len());
    let mut problems = Vec::new();
    for (index, cell) in record.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(cell) else {
            problems.push(format!("the name of column {} is not UTF-8", index + 1));
            columns.push(None);
            continue;
        };
        let name = name.trim();
        if name.is_empty() {
            columns.push(None);
            continue;
        }
        let known = COLUMNS
            .iter()
            .copied()
            .find(|column| column.eq_ignore_ascii_case(name));
        match known {
            Some(column) if columns.contains(&Some(column)) => {
                problems.push(format!("column {column:?} appears twice"));
                columns.push(None);
            }
            Some(column) => columns.push(Some(column)),
            None => {
                problems.push(format!("unknown column {name:?}"));
                columns.push(None);
            }
        }
    }
    for required in REQUIRED_COLUMNS {
        if !columns.contains(&Some(required)) {
            problems.push(format!("missing required column {required:?}"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "header (line 1): {}. The columns are {} (optional: {}); the names are case-insensitive and in any order",
            problems.join("; "),
            REQUIRED_COLUMNS.join(", "),
            COLUMNS
                .iter()
                .filter(|column| !REQUIRED_COLUMNS.contains(column))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(columns)
}

fn read_row(
    columns: &[Option<&'static str>],
    record: &csv::ByteRecord,
    line: u64,
) -> anyhow::Result<Result<v1::ImportRow, Vec<RowError>>> {
    if record.len() != columns.len() {
        let hint = if record.len() > columns.len() {
            ": a value that holds the separator must be in double quotes"
        } else {
            ""
        };
        return Ok(Err(vec![RowError::new(
            "row",
            format!(
                "{} fields where the header has {}{hint}",
                record.len(),
                columns.len()
            ),
        )]));
    }
    let mut person = v1::PersonInput::default();
    let mut stay = v1::StayInput::default();
    let mut confirm_new_person = false;
    let mut errors = Vec::new();
    for (index, (column, cell)) in columns.iter().zip(record.iter()).enumerate() {
        let Ok(value) = std::str::from_utf8(cell) else {
            errors.push(RowError::new(
                column.unwrap_or("row"),
                format!(
                    "column {} is not UTF-8 text: save the file as \"CSV UTF-8\"",
                    index + 1
                ),
            ));
            continue;
        };
        let value = value.trim();
        let Some(column) = column else {
            if !value.is_empty() {
                errors.push(RowError::new(
                    "row",
                    format!("a value in column {}, which has no name", index + 1),
                ));
            }
            continue;
        };
        if *column == "confirm_new_person" {
            match yes_or_no(value) {
                Some(yes) => confirm_new_person = yes,
                None => errors.push(RowError::new(
                    *column,
                    format!("{value:?} is neither yes nor no"),
                )),
            }
            continue;
        }
        if *column == "requested_resources" {
            match requested_resources(value) {
                Ok(names) => stay.requested_resources = names,
                Err(reason) => errors.push(RowError::new(*column, reason)),
            }
            continue;
        }
        let value = if DATE_COLUMNS.contains(column) {
            iso_date(value)
        } else {
            value.to_owned()
        };
        let field = match *column {
            "family_name" => &mut person.family_name,
            "birth_name" => &mut person.birth_name,
            "given_names" => &mut person.given_names,
            "birth_date" => &mut person.birth_date,
            "email" => &mut person.email,
            "ine" => &mut person.ine,
            "phone" => &mut person.phone,
            "population" => &mut stay.population,
            "sponsor_unit" => &mut stay.sponsor_unit,
            "sponsor_login" => &mut stay.sponsor_login,
            "agreement_id" => &mut stay.agreement_id,
            "start_date" => &mut stay.start_date,
            "end_date" => &mut stay.end_date,
            other => bail!("column {other} has no field"),
        };
        *field = value;
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    Ok(Ok(v1::ImportRow {
        row_number: i64::try_from(line).context("line number")?,
        person: Some(person),
        stay: Some(stay),
        confirm_new_person,
    }))
}

/// What separates the names in a `requested_resources` cell: `|`, which no
/// separator of the file is, so that the cell never needs quotes; or `;`, as people
/// write lists (in a `;`-separated file the cell is then in double quotes, which
/// spreadsheets write themselves). Never `,`: in a `,`-separated file it would cut
/// the row.
const RESOURCE_SEPARATORS: [char; 2] = ['|', ';'];

/// The names in a `requested_resources` cell, spaces around them dropped, as they
/// come; an empty cell asks for nothing, and so does an empty place between two
/// separators (`premises;`). Whether each is a resource name is intake's rule; a
/// comma is said here, because intake would only see one long name that is not one.
pub fn requested_resources(value: &str) -> Result<Vec<String>, String> {
    if value.contains(',') {
        return Err(format!(
            "{value:?}: separate the names with | or ; (not a comma)"
        ));
    }
    Ok(value
        .split(RESOURCE_SEPARATORS)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Spreadsheet ways of saying yes or no, in English and French; empty is no.
fn yes_or_no(value: &str) -> Option<bool> {
    match value.to_lowercase().as_str() {
        "" | "no" | "n" | "non" | "false" | "faux" | "0" => Some(false),
        "yes" | "y" | "oui" | "o" | "true" | "vrai" | "1" | "x" => Some(true),
        _ => None,
    }
}

/// `DD/MM/YYYY` (as spreadsheets show dates in France) becomes `YYYY-MM-DD`; anything
/// else is left as it is, for intake to accept or to reject with its reason.
pub fn iso_date(value: &str) -> String {
    let digits = |part: &str, lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
    };
    if let [day, month, year] = value.split('/').collect::<Vec<_>>()[..]
        && digits(day, 1..=2)
        && digits(month, 1..=2)
        && digits(year, 4..=4)
    {
        format!("{year}-{month:0>2}-{day:0>2}")
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "family_name,given_names,birth_date,email,population,sponsor_unit,start_date,end_date";

    fn person(row: &CohortRow) -> v1::PersonInput {
        row.content
            .clone()
            .expect("readable")
            .person
            .expect("person")
    }

    fn stay(row: &CohortRow) -> v1::StayInput {
        row.content.clone().expect("readable").stay.expect("stay")
    }

    #[test]
    fn a_plain_file() {
        let file = parse(
            format!("{HEADER}\nLefèvre,Élodie,2001-02-03,elodie@example.org,IFSI,IFSI-NORD,2026-09-01,2027-06-30\n")
                .as_bytes(),
        )
        .expect("parsed");
        assert_eq!(file.separator, b',');
        assert_eq!(file.rows.len(), 1);
        assert_eq!(file.rows[0].line, 2);
        let row = file.rows[0].content.clone().expect("readable");
        assert_eq!(row.row_number, 2);
        assert_eq!(person(&file.rows[0]).family_name, "Lefèvre");
        assert_eq!(person(&file.rows[0]).ine, "");
        assert_eq!(stay(&file.rows[0]).end_date, "2027-06-30");
    }

    #[test]
    fn a_french_spreadsheet_export() {
        // BOM, `;`, CRLF, columns in another order and case, spaces, DD/MM/YYYY dates,
        // and a comma inside a value that `;` makes harmless.
        let text = "\u{feff}END_DATE; Family_Name ;given_names;birth_date;email;population;sponsor_unit;start_date;phone\r\n\
                    30/06/2027;D'Arc, dite la Pucelle;Jeanne;3/2/2001; jeanne@example.org ;IFSI;IFSI-NORD;01/09/2026;06 12 34 56 78\r\n";
        assert!(text.as_bytes().starts_with(UTF8_BOM));
        let file = parse(text.as_bytes()).expect("parsed");
        assert_eq!(file.separator, b';');
        assert!(file.bom);
        let row = &file.rows[0];
        assert_eq!(row.line, 2);
        assert_eq!(person(row).family_name, "D'Arc, dite la Pucelle");
        assert_eq!(person(row).birth_date, "2001-02-03");
        assert_eq!(person(row).email, "jeanne@example.org");
        assert_eq!(person(row).phone, "06 12 34 56 78");
        assert_eq!(stay(row).start_date, "2026-09-01");
        assert_eq!(stay(row).end_date, "2027-06-30");
    }

    #[test]
    fn the_separator_is_the_headers() {
        assert_eq!(detect_separator(b"a;b;c\n1,5;2;3"), b';');
        assert_eq!(detect_separator(b"a,b,c\n1;2;3"), b',');
        assert_eq!(detect_separator(b"\"a;b\",c,d\n"), b',');
        assert_eq!(detect_separator(b"\n\na;b\n"), b';');
        assert_eq!(detect_separator(b""), b',');
    }

    #[test]
    fn confirm_new_person_is_yes_or_no() {
        let text = format!(
            "{HEADER},Confirm_New_Person\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,Oui\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,peut-être\n"
        );
        let file = parse(text.as_bytes()).expect("parsed");
        let confirmed: Vec<Option<bool>> = file
            .rows
            .iter()
            .map(|row| row.content.as_ref().ok().map(|row| row.confirm_new_person))
            .collect();
        assert_eq!(confirmed, [Some(false), Some(true), None]);
        assert_eq!(
            file.rows[2].content.clone().expect_err("rejected"),
            [RowError::new(
                "confirm_new_person",
                "\"peut-être\" is neither yes nor no"
            )]
        );
    }

    #[test]
    fn requested_resources_are_a_list_in_one_cell() {
        let asked = requested_resources;
        assert_eq!(asked(""), Ok(Vec::new()));
        assert_eq!(asked("premises"), Ok(vec!["premises".to_owned()]));
        let both = Ok(vec!["premises".to_owned(), "library".to_owned()]);
        assert_eq!(asked("premises|library"), both);
        assert_eq!(asked("premises;library"), both);
        assert_eq!(asked(" premises | library ;"), both);
        assert_eq!(asked("premises||library"), both);
        // The names' rules are intake's: these are sent as they are, for intake to
        // refuse with its reason.
        assert_eq!(
            asked("Premises|lab 3"),
            Ok(vec!["Premises".to_owned(), "lab 3".to_owned()])
        );
        assert_eq!(
            asked("premises,library"),
            Err("\"premises,library\": separate the names with | or ; (not a comma)".to_owned())
        );
    }

    #[test]
    fn the_requested_resources_column_in_both_kinds_of_file() {
        let text = format!(
            "{HEADER},Requested_Resources\n\
             Martin,Paul,1990-01-01,paul@example.org,VISITING_DOCTORAL,LAB-CHEM,2026-09-01,2027-06-30,premises|library\n\
             Martin,Léa,1990-01-01,lea@example.org,VISITING_DOCTORAL,LAB-CHEM,2026-09-01,2027-06-30,\n\
             Martin,Jean,1990-01-01,jean@example.org,VISITING_DOCTORAL,LAB-CHEM,2026-09-01,2027-06-30,\"premises,library\"\n"
        );
        let file = parse(text.as_bytes()).expect("parsed");
        assert_eq!(
            stay(&file.rows[0]).requested_resources,
            ["premises", "library"]
        );
        assert!(stay(&file.rows[1]).requested_resources.is_empty());
        assert_eq!(
            file.rows[2].content.clone().expect_err("a comma"),
            [RowError::new(
                "requested_resources",
                "\"premises,library\": separate the names with | or ; (not a comma)"
            )]
        );
        // `;` inside a `;`-separated file: in quotes, as a spreadsheet writes it.
        let text = format!(
            "{};requested_resources\r\n\
             Martin;Paul;01/01/1990;paul@example.org;VISITING_DOCTORAL;LAB-CHEM;01/09/2026;30/06/2027;\"premises; library\"\r\n",
            HEADER.replace(',', ";")
        );
        let file = parse(text.as_bytes()).expect("parsed");
        assert_eq!(
            stay(&file.rows[0]).requested_resources,
            ["premises", "library"]
        );
    }

    #[test]
    fn dates_from_spreadsheets_become_iso() {
        assert_eq!(iso_date("03/02/2001"), "2001-02-03");
        assert_eq!(iso_date("3/2/2001"), "2001-02-03");
        assert_eq!(iso_date("2001-02-03"), "2001-02-03");
        // Left for intake to reject with its own reason.
        assert_eq!(iso_date("31/02/2001"), "2001-02-31");
        assert_eq!(iso_date("03/02/01"), "03/02/01");
        assert_eq!(iso_date("03.02.2001"), "03.02.2001");
        assert_eq!(iso_date(""), "");
    }

    #[test]
    fn an_unknown_column_is_named_before_anything_is_sent() {
        let error = parse(format!("{HEADER},nationality,Ine,INE\n").as_bytes())
            .expect_err("unknown column");
        let message = format!("{error:#}");
        assert!(
            message.contains("unknown column \"nationality\""),
            "{message}"
        );
        assert!(
            message.contains("column \"ine\" appears twice"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_required_column_is_named() {
        let header = HEADER.replace(",email", "");
        let error = parse(format!("{header}\n").as_bytes()).expect_err("no email column");
        let message = format!("{error:#}");
        assert!(
            message.contains("missing required column \"email\""),
            "{message}"
        );
    }

    #[test]
    fn empty_and_utf16_files_are_refused() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\xEF\xBB\xBF").is_err());
        assert!(parse(b"\xFF\xFEf\x00").is_err());
    }

    #[test]
    fn row_numbers_are_line_numbers() {
        let valid = "Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30";
        let text = format!(
            "{HEADER}\n{valid}\n\n,,,,,,,\n\"Le\nGall\",Anne,1990-01-01,anne@example.org,VAE,SUFA,2026-09-01,2027-06-30\n{valid}\n"
        );
        let file = parse(text.as_bytes()).expect("parsed");
        let lines: Vec<u64> = file.rows.iter().map(|row| row.line).collect();
        // Line 3 is blank and line 4 is an empty spreadsheet row: both are skipped
        // but still counted; the quoted value spans lines 5 and 6.
        assert_eq!(lines, [2, 5, 7]);
        assert_eq!(person(&file.rows[1]).family_name, "Le\nGall");
        let numbers: Vec<i64> = file.readable().map(|row| row.row_number).collect();
        assert_eq!(numbers, [2, 5, 7]);
    }

    #[test]
    fn row_numbers_with_cr_line_ends() {
        // Found by the property tests: with CR alone (old Mac spreadsheets), every row
        // was numbered 2.
        let text = format!(
            "{HEADER}\rMartin,Paul,1990-01-01,p@example.org,VAE,SUFA,2026-09-01,2027-06-30\r\r\
             Curie,Marie,1990-01-01,m@example.org,VAE,SUFA,2026-09-01,2027-06-30\r"
        );
        let file = parse(text.as_bytes()).expect("parsed");
        let lines: Vec<u64> = file.rows.iter().map(|row| row.line).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn row_numbers_with_crlf_line_ends() {
        let valid = "Martin;Paul;01/01/1990;paul@example.org;VAE;SUFA;01/09/2026;30/06/2027";
        let text = format!(
            "{}\r\n{valid}\r\n\r\n{valid}\r\n\"Le\r\nGall\";Anne;01/01/1990;anne@example.org;VAE;SUFA;01/09/2026;30/06/2027\r\n{valid}",
            HEADER.replace(',', ";")
        );
        let file = parse(text.as_bytes()).expect("parsed");
        let lines: Vec<u64> = file.rows.iter().map(|row| row.line).collect();
        assert_eq!(lines, [2, 4, 5, 7]);
    }

    #[test]
    fn unreadable_rows_are_rejected_locally_and_the_others_kept() {
        let mut bytes = format!(
            "{HEADER},\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,x,y\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,extra\n"
        )
        .into_bytes();
        // A Latin-1 "é" in the family name of line 6.
        bytes.extend_from_slice(
            b"Lef\xE8vre,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30,\n",
        );
        let file = parse(&bytes).expect("parsed");
        let outcomes: Vec<(u64, Option<String>)> = file
            .rows
            .iter()
            .map(|row| {
                (
                    row.line,
                    row.content.as_ref().err().map(|errors| {
                        errors
                            .iter()
                            .map(|error| format!("{}: {}", error.field, error.reason))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    }),
                )
            })
            .collect();
        assert_eq!(outcomes[0], (2, None));
        assert_eq!(
            outcomes[1],
            (3, Some("row: 7 fields where the header has 9".to_owned()))
        );
        assert!(
            outcomes[2]
                .1
                .as_deref()
                .is_some_and(|reason| reason.contains("10 fields where the header has 9: a value that holds the separator must be in double quotes")),
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes[3],
            (
                5,
                Some("row: a value in column 9, which has no name".to_owned())
            )
        );
        assert!(
            outcomes[4].1.as_deref().is_some_and(|reason| reason
                .starts_with("family_name: column 1 is not UTF-8 text")),
            "{outcomes:?}"
        );
        assert_eq!(file.readable().count(), 1);
    }
}

/// Property tests: any bytes given as a cohort file are read or refused, never a
/// panic; every row is numbered by the line it starts on; a file a spreadsheet could
/// have written reads back as the rows it was made of. Cases: proptest's (256, or
/// `PROPTEST_CASES`).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A cell as a person fills it in: trimmed (reading trims), anything inside,
    /// separators, quotes and line ends included.
    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-zÀ-ÿ0-9' .-]{0,12}",
            2 => "[a-z ,;\"\r\n]{0,8}",
            1 => "\\PC{0,12}",
        ]
        .prop_map(|value| value.trim().to_owned())
    }

    /// A date as a spreadsheet writes it, and as intake is to receive it.
    fn date() -> impl Strategy<Value = (String, String)> {
        (1950u32..2040, 1u32..=12, 1u32..=28, any::<bool>()).prop_map(
            |(year, month, day, french)| {
                let iso = format!("{year}-{month:02}-{day:02}");
                if french {
                    (format!("{day}/{month}/{year}"), iso)
                } else {
                    (iso.clone(), iso)
                }
            },
        )
    }

    /// A `requested_resources` cell, and the names it asks for.
    fn resources() -> impl Strategy<Value = (String, Vec<String>)> {
        (
            prop::collection::vec("[a-z][a-z-]{0,8}", 0..3),
            any::<bool>(),
        )
            .prop_map(|(names, pipes)| (names.join(if pipes { "|" } else { " ; " }), names))
    }

    /// The values of one row, column by column as `COLUMNS` names them, and the row
    /// intake is to receive.
    fn row() -> impl Strategy<Value = (Vec<String>, v1::ImportRow)> {
        (
            (
                "[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ' -]{0,10}[a-z]",
                cell(),
                cell(),
                date(),
                cell(),
                cell(),
                cell(),
            ),
            (cell(), cell(), cell(), cell(), date(), date()),
            (
                resources(),
                prop::sample::select(vec![("", false), ("Oui", true), ("no", false), ("x", true)]),
            ),
        )
            .prop_map(
                |(
                    (family_name, birth_name, given_names, birth_date, email, ine, phone),
                    (population, sponsor_unit, sponsor_login, agreement_id, start_date, end_date),
                    ((resources_cell, requested_resources), (confirm_cell, confirm_new_person)),
                )| {
                    let cells = vec![
                        family_name.clone(),
                        birth_name.clone(),
                        given_names.clone(),
                        birth_date.0,
                        email.clone(),
                        ine.clone(),
                        phone.clone(),
                        population.clone(),
                        sponsor_unit.clone(),
                        sponsor_login.clone(),
                        agreement_id.clone(),
                        start_date.0,
                        end_date.0,
                        resources_cell,
                        confirm_cell.to_owned(),
                    ];
                    let row = v1::ImportRow {
                        row_number: 0,
                        person: Some(v1::PersonInput {
                            family_name,
                            birth_name,
                            given_names,
                            birth_date: birth_date.1,
                            email,
                            ine,
                            phone,
                        }),
                        stay: Some(v1::StayInput {
                            population,
                            sponsor_unit,
                            sponsor_login,
                            agreement_id,
                            start_date: start_date.1,
                            end_date: end_date.1,
                            requested_resources,
                        }),
                        confirm_new_person,
                    };
                    (cells, row)
                },
            )
    }

    /// A whole file: the columns in some order and case, a separator, a BOM or not,
    /// CRLF or LF, blank lines here and there; and the rows it holds, each with the
    /// line it starts on.
    fn cohort_file() -> impl Strategy<Value = (Vec<u8>, Vec<v1::ImportRow>)> {
        (
            Just((0..COLUMNS.len()).collect::<Vec<usize>>()).prop_shuffle(),
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r"]),
            any::<bool>(),
            prop::collection::vec((row(), prop::bool::weighted(0.1)), 0..6),
        )
            .prop_map(|(order, semicolons, bom, end, upper, rows)| {
                let separator = if semicolons { b';' } else { b',' };
                // One record as a spreadsheet writes it: quoted when it must be.
                let record = |cells: Vec<&str>| {
                    let mut writer = csv::WriterBuilder::new()
                        .delimiter(separator)
                        .terminator(csv::Terminator::Any(b'\n'))
                        .from_writer(Vec::new());
                    writer.write_record(cells).expect("in memory");
                    let mut bytes = writer.into_inner().expect("in memory");
                    bytes.pop();
                    bytes.extend(end);
                    bytes
                };
                let mut bytes = if bom { UTF8_BOM.to_vec() } else { Vec::new() };
                let header: Vec<String> = order
                    .iter()
                    .map(|index| {
                        let name = COLUMNS[*index];
                        if upper {
                            name.to_uppercase()
                        } else {
                            name.to_owned()
                        }
                    })
                    .collect();
                bytes.extend(record(header.iter().map(String::as_str).collect()));
                let mut expected = Vec::new();
                for ((cells, mut row), blank_before) in rows {
                    if blank_before {
                        bytes.extend(end);
                    }
                    let line = line_ends(&bytes) + 1;
                    row.row_number = i64::try_from(line).expect("small");
                    bytes.extend(record(
                        order.iter().map(|index| cells[*index].as_str()).collect(),
                    ));
                    expected.push(row);
                }
                (bytes, expected)
            })
    }

    /// Lines counted as a person does, for the bound of every row's number.
    fn line_count(bytes: &[u8]) -> u64 {
        line_ends(bytes) as u64 + 1
    }

    fn rows_are_numbered_by_their_lines(
        bytes: &[u8],
        file: &CohortFile,
    ) -> Result<(), TestCaseError> {
        let mut previous = 1;
        for row in &file.rows {
            prop_assert!(row.line > previous, "{} after {}", row.line, previous);
            prop_assert!(row.line <= line_count(bytes));
            previous = row.line;
            if let Ok(content) = &row.content {
                prop_assert_eq!(u64::try_from(content.row_number).ok(), Some(row.line));
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(file) = parse(&bytes) {
                rows_are_numbered_by_their_lines(&bytes, &file)?;
            }
        }

        #[test]
        fn any_rows_under_a_good_header_are_read_or_refused(
            semicolons in any::<bool>(),
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                "[a-zé0-9,;\"\r\n /|-]{0,300}".prop_map(String::into_bytes),
            ],
        ) {
            let separator = if semicolons { ";" } else { "," };
            let mut bytes = REQUIRED_COLUMNS.join(separator).into_bytes();
            bytes.extend(format!("{separator}confirm_new_person{separator}requested_resources\n").bytes());
            bytes.extend(body);
            if let Ok(file) = parse(&bytes) {
                rows_are_numbered_by_their_lines(&bytes, &file)?;
            }
        }

        #[test]
        fn a_spreadsheet_file_reads_back_as_its_rows((bytes, expected) in cohort_file()) {
            let file = parse(&bytes);
            prop_assert!(file.is_ok(), "{:?}", file);
            let file = file.expect("checked");
            rows_are_numbered_by_their_lines(&bytes, &file)?;
            let read: Vec<v1::ImportRow> = file.readable().cloned().collect();
            prop_assert_eq!(read, expected, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}
