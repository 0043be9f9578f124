//! `hlctl stats`: how many hosted learners there are on one day, in all and by
//! population, agreement and sponsor unit (a learner with stays in two populations
//! counts in both).
#![allow(clippy::print_stdout)]

use hosted_contracts::v1;
use serde_json::json;

use crate::{
    rpc::{Intake, server_error},
    values,
};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The day to count on (YYYY-MM-DD); intake's today by default.
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    on: Option<String>,
}

pub async fn run(args: StatsArgs, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    let stats = intake
        .client()
        .await?
        .get_stats(v1::GetStatsRequest {
            on: args.on.unwrap_or_default(),
        })
        .await
        .map_err(server_error)?
        .into_inner();
    if json {
        println!("{}", stats_json(&stats));
        return Ok(());
    }
    // The partner says more than an agreement's id. Best effort: a caller may count
    // without being allowed to read agreements, and the counts stand without names.
    let mut partners = Vec::new();
    for count in &stats.by_agreement {
        if count.key.is_empty() {
            continue;
        }
        if let Ok(found) = intake
            .client()
            .await?
            .get_agreement(v1::GetAgreementRequest {
                agreement_id: count.key.clone(),
            })
            .await
        {
            let partner = found
                .into_inner()
                .agreement
                .unwrap_or_default()
                .partner_name;
            partners.push((count.key.clone(), partner));
        }
    }
    print!("{}", stats_text(&stats, &partners));
    Ok(())
}

pub fn stats_json(stats: &v1::GetStatsResponse) -> serde_json::Value {
    let counts = |counts: &[v1::Count]| -> serde_json::Value {
        counts
            .iter()
            .map(|count| (count.key.clone(), json!(count.learners)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "on": stats.on,
        "total_learners": stats.total_learners,
        // The empty key counts the learners under no agreement.
        "by_population": counts(&stats.by_population),
        "by_agreement": counts(&stats.by_agreement),
        "by_sponsor_unit": counts(&stats.by_sponsor_unit),
        // Learners with a stay on a day of the year, oldest year first.
        "by_year": stats.by_year.iter().map(|year| json!({
            "year": year.year,
            "learners": year.learners,
            "by_population": counts(&year.by_population),
            "by_agreement": counts(&year.by_agreement),
        })).collect::<Vec<_>>(),
    })
}

/// The total, then one small table per breakdown, in intake's order (largest first).
pub fn stats_text(stats: &v1::GetStatsResponse, partners: &[(String, String)]) -> String {
    let mut text = format!(
        "hosted learners on {}: {}\n",
        stats.on, stats.total_learners
    );
    let agreement = |key: &str| {
        if key.is_empty() {
            return "(no agreement)".to_owned();
        }
        match partners.iter().find(|(id, _)| id == key) {
            Some((_, partner)) => format!("{key} {partner}"),
            None => key.to_owned(),
        }
    };
    let tables: [(&str, Vec<(String, i64)>); 4] = [
        (
            "population",
            stats
                .by_population
                .iter()
                .map(|count| (count.key.clone(), count.learners))
                .collect(),
        ),
        (
            "agreement",
            stats
                .by_agreement
                .iter()
                .map(|count| (agreement(&count.key), count.learners))
                .collect(),
        ),
        (
            "sponsor unit",
            stats
                .by_sponsor_unit
                .iter()
                .map(|count| (count.key.clone(), count.learners))
                .collect(),
        ),
        (
            "year",
            stats
                .by_year
                .iter()
                .map(|year| (year.year.to_string(), year.learners))
                .collect(),
        ),
    ];
    for (heading, rows) in tables {
        let width = rows
            .iter()
            .map(|(key, _)| key.chars().count())
            .chain([heading.len()])
            .max()
            .unwrap_or_default();
        text.push_str(&format!("\n{heading:<width$}  learners\n"));
        if rows.is_empty() {
            text.push_str("(none)\n");
        }
        for (key, learners) in rows {
            text.push_str(&format!("{key:<width$}  {learners:>8}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> v1::GetStatsResponse {
        let count = |key: &str, learners: i64| v1::Count {
            key: key.to_owned(),
            learners,
        };
        v1::GetStatsResponse {
            on: "2026-11-29".to_owned(),
            total_learners: 5,
            by_population: vec![count("RECTORAT_PAF", 2), count("IFSI", 1)],
            by_agreement: vec![count("", 4), count("a-1", 1)],
            by_sponsor_unit: vec![],
            by_year: vec![v1::YearCounts {
                year: 2026,
                learners: 6,
                by_population: vec![count("IFSI", 6)],
                by_agreement: vec![count("", 6)],
            }],
        }
    }

    #[test]
    fn tables_line_up_and_name_partners() {
        let text = stats_text(&stats(), &[("a-1".to_owned(), "IFSI Nord".to_owned())]);
        assert_eq!(
            text,
            "hosted learners on 2026-11-29: 5\n\
             \n\
             population    learners\n\
             RECTORAT_PAF         2\n\
             IFSI                 1\n\
             \n\
             agreement       learners\n\
             (no agreement)         4\n\
             a-1 IFSI Nord          1\n\
             \n\
             sponsor unit  learners\n\
             (none)\n\
             \n\
             year  learners\n\
             2026         6\n"
        );
    }

    #[test]
    fn json_is_one_object_of_counts() {
        let json = stats_json(&stats());
        assert_eq!(json["total_learners"], 5);
        assert_eq!(json["by_population"]["RECTORAT_PAF"], 2);
        assert_eq!(json["by_agreement"][""], 4);
        assert_eq!(json["by_sponsor_unit"], json!({}));
        assert_eq!(json["by_year"][0]["year"], 2026);
        assert_eq!(json["by_year"][0]["by_population"]["IFSI"], 6);
    }
}
