//! Where a person's data is still readable: every column of every table of a
//! database, every message (payload and headers) of a stream. What an erasure test
//! greps with, so that every test looks the same way and misses nothing a new table or
//! a new event would add.

use sqlx::{Connection, PgConnection};

/// Every (table, column) of the database at `url` (its `public` schema) where one of
/// `needles` appears, ignoring case: text and every other type cast to text, `bytea`
/// searched for the needle's UTF-8 bytes (a protobuf payload holds its strings as is).
pub async fn find_in_database(url: &str, needles: &[&str]) -> Vec<(String, String)> {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text
         FROM information_schema.columns c
         JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut found = Vec::new();
    for (table, column, data_type) in columns {
        let condition = if data_type == "bytea" {
            // Both cases of the needle: bytes have no case of their own.
            format!(
                "position(convert_to($1, 'UTF8') IN \"{column}\") > 0
                 OR position(convert_to(lower($1), 'UTF8') IN \"{column}\") > 0
                 OR position(convert_to(upper($1), 'UTF8') IN \"{column}\") > 0"
            )
        } else {
            format!("strpos(lower(\"{column}\"::text), lower($1)) > 0")
        };
        let query = format!("SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE {condition})");
        for needle in needles {
            let holds: bool = sqlx::query_scalar(&query)
                .bind(*needle)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|error| panic!("searching {table}.{column}: {error}"));
            if holds {
                found.push((table.clone(), column.clone()));
                break;
            }
        }
    }
    let _ = conn.close().await;
    found
}

/// Every message of `stream` (by sequence and subject) whose payload or headers hold
/// one of `needles`, ignoring case. A stream that does not exist holds nothing.
pub async fn find_in_stream(stream: &str, needles: &[&str]) -> Vec<(u64, String)> {
    let jetstream = crate::jetstream().await;
    if jetstream.get_stream(stream).await.is_err() {
        return Vec::new();
    }
    let needles: Vec<String> = needles.iter().map(|needle| needle.to_lowercase()).collect();
    let mut found = Vec::new();
    for message in crate::stream_messages(stream).await {
        let mut text = String::from_utf8_lossy(&message.payload).to_lowercase();
        for (name, values) in message.headers.iter() {
            text.push('\n');
            text.push_str(&name.to_string().to_lowercase());
            for value in values {
                text.push(' ');
                text.push_str(&value.as_str().to_lowercase());
            }
        }
        if needles.iter().any(|needle| text.contains(needle.as_str())) {
            found.push((message.sequence, message.subject.to_string()));
        }
    }
    found
}
