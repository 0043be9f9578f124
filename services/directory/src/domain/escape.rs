//! Escaping of values placed in distinguished names (RFC 4514) and in search
//! filters (RFC 4515).

/// Escapes an attribute value for use in an RDN (RFC 4514 §2.4).
pub fn dn_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                escaped.push('\\');
                escaped.push(c);
            }
            '#' if index == 0 => escaped.push_str("\\#"),
            ' ' if index == 0 || index == last => escaped.push_str("\\ "),
            '\0' => escaped.push_str("\\00"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Escapes an assertion value for use in a search filter (RFC 4515 §3).
pub fn filter_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len() + 8);
    for byte_char in value.chars() {
        match byte_char {
            '*' => escaped.push_str("\\2a"),
            '(' => escaped.push_str("\\28"),
            ')' => escaped.push_str("\\29"),
            '\\' => escaped.push_str("\\5c"),
            '\0' => escaped.push_str("\\00"),
            _ => escaped.push(byte_char),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_values_follow_rfc_4514() {
        assert_eq!(dn_value("Sue, Grabbit and Runn"), "Sue\\, Grabbit and Runn");
        assert_eq!(dn_value("a+b=c"), "a\\+b\\=c");
        assert_eq!(dn_value("back\\slash"), "back\\\\slash");
        assert_eq!(dn_value("\"quoted\""), "\\\"quoted\\\"");
        assert_eq!(dn_value(" lead and trail "), "\\ lead and trail\\ ");
        assert_eq!(dn_value("#hash # inside"), "\\#hash # inside");
        assert_eq!(dn_value("<a;b>"), "\\<a\\;b\\>");
        // Non-ASCII and apostrophes need no escape: UTF-8 is allowed as it is.
        assert_eq!(dn_value("Lefèvre d'Arc"), "Lefèvre d'Arc");
    }

    #[test]
    fn filter_values_follow_rfc_4515() {
        assert_eq!(
            filter_value("Parens R Us (for all your parenthetical needs)"),
            "Parens R Us \\28for all your parenthetical needs\\29"
        );
        assert_eq!(filter_value("*"), "\\2a");
        assert_eq!(filter_value("C:\\MyFile"), "C:\\5cMyFile");
        assert_eq!(filter_value("Lefèvre, d'Arc = +\""), "Lefèvre, d'Arc = +\"");
    }
}
