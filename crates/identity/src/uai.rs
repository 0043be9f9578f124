//! The UAI (unité administrative immatriculée), the national code of a French
//! establishment: 7 digits and a key letter.

const UAI_KEYS: &[u8; 23] = b"ABCDEFGHJKLMNPRSTUVWXYZ";

/// Whether `value` is 7 digits and the key letter computed from them
/// (`"ABCDEFGHJKLMNPRSTUVWXYZ"[digits mod 23]`).
pub fn is_valid(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 8 || !bytes[..7].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Ok(number) = value[..7].parse::<usize>() else {
        return false;
    };
    UAI_KEYS[number % 23] == bytes[7]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_letters() {
        assert!(is_valid("0134009M"));
        assert!(is_valid("0999999F"));
        assert!(is_valid("0000000A"));
        assert!(is_valid("0000022Z"));
        assert!(!is_valid("0134009N"));
        assert!(!is_valid("0999999G"));
        assert!(!is_valid("134009M"));
        assert!(!is_valid("0134009m"));
        assert!(!is_valid("09a9999F"));
        assert!(!is_valid("0134009MM"));
    }
}
