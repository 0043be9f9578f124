//! Names in other scripts written in ASCII letters, by recognised standards:
//! Cyrillic by ICAO Doc 9303 (the machine-readable travel documents' table, which
//! Russian, Ukrainian and other passports print: `Ольга` → `olga`, `Щукин` →
//! `shchukin`), Greek by ELOT 743 (the Greek standard, ISO 843's transcription, which
//! Greek passports use: `Ελένη` → `eleni`, `Γιώργος` → `giorgos`). Every other script
//! goes through a general transliteration table (`王小明` → `wang xiao ming`, `Zoë` →
//! `zoe`).
//!
//! The result is for matching and logins, never for display: Cyrillic and Greek come
//! out in lower case, other letters keep their case.

/// `name` in ASCII.
pub fn to_ascii(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut ascii = String::with_capacity(name.len());
    // Runs of other scripts go through the general table whole: it separates the
    // syllables it writes (`小明` → `Xiao Ming`).
    let mut other = String::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let is_cyrillic = cyrillic(c);
        if is_cyrillic.is_none() && greek_letter(c).is_none() {
            other.push(c);
            index += 1;
            continue;
        }
        ascii.push_str(&deunicode::deunicode(&other));
        other.clear();
        if let Some(latin) = is_cyrillic {
            ascii.push_str(latin);
            index += 1;
        } else {
            index += greek(&chars, index, &mut ascii);
        }
    }
    ascii.push_str(&deunicode::deunicode(&other));
    ascii
}

/// ICAO Doc 9303, part 3, Cyrillic: the soft sign is not written.
fn cyrillic(c: char) -> Option<&'static str> {
    if !('\u{0400}'..='\u{04FF}').contains(&c) {
        return None;
    }
    let lower = c.to_lowercase().next().unwrap_or(c);
    Some(match lower {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' | 'ґ' | 'ѓ' => "g",
        'д' | 'ђ' => "d",
        'е' | 'ё' | 'э' => "e",
        'є' | 'ъ' => "ie",
        'ж' => "zh",
        'з' => "z",
        'ѕ' | 'џ' => "dz",
        'и' | 'й' | 'і' | 'ї' => "i",
        'ј' => "j",
        'к' | 'ќ' => "k",
        'л' => "l",
        'љ' => "lj",
        'м' => "m",
        'н' => "n",
        'њ' => "nj",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'ћ' => "c",
        'у' | 'ў' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ы' => "y",
        'ь' => "",
        'ю' => "iu",
        'я' => "ia",
        _ => return None,
    })
}

/// A Greek letter in lower case without its accent, and whether it bore a diaeresis
/// (which keeps it from joining the vowel before it: `αϋ` is `ay`, not `av`).
fn greek_letter(c: char) -> Option<(char, bool)> {
    if !('\u{0370}'..='\u{03FF}').contains(&c) && !('\u{1F00}'..='\u{1FFF}').contains(&c) {
        return None;
    }
    let lower = c.to_lowercase().next().unwrap_or(c);
    let (base, diaeresis) = match lower {
        'ά' | 'ὰ' | 'ᾶ' | 'ἀ' | 'ἁ' => ('α', false),
        'έ' | 'ὲ' | 'ἐ' | 'ἑ' => ('ε', false),
        'ή' | 'ὴ' | 'ῆ' | 'ἠ' | 'ἡ' => ('η', false),
        'ί' | 'ὶ' | 'ῖ' | 'ἰ' | 'ἱ' => ('ι', false),
        'ϊ' | 'ΐ' | 'ῒ' => ('ι', true),
        'ό' | 'ὸ' | 'ὀ' | 'ὁ' => ('ο', false),
        'ύ' | 'ὺ' | 'ῦ' | 'ὐ' | 'ὑ' => ('υ', false),
        'ϋ' | 'ΰ' | 'ῢ' => ('υ', true),
        'ώ' | 'ὼ' | 'ῶ' | 'ὠ' | 'ὡ' => ('ω', false),
        'ς' => ('σ', false),
        other if ('α'..='ω').contains(&other) => (other, false),
        _ => return None,
    };
    Some((base, diaeresis))
}

fn greek_single(letter: char) -> &'static str {
    match letter {
        'α' => "a",
        'β' => "v",
        'γ' => "g",
        'δ' => "d",
        'ε' => "e",
        'ζ' => "z",
        'η' | 'ι' => "i",
        'θ' => "th",
        'κ' => "k",
        'λ' => "l",
        'μ' => "m",
        'ν' => "n",
        'ξ' => "x",
        'ο' | 'ω' => "o",
        'π' => "p",
        'ρ' => "r",
        'σ' => "s",
        'τ' => "t",
        'υ' => "y",
        'φ' => "f",
        'χ' => "ch",
        'ψ' => "ps",
        _ => "",
    }
}

/// ELOT 743: writes the Greek letter at `index` (with the one after it when they go
/// together) and says how many letters it used.
fn greek(chars: &[char], index: usize, ascii: &mut String) -> usize {
    let letter = |at: usize| chars.get(at).and_then(|c| greek_letter(*c));
    let Some((current, _)) = letter(index) else {
        return 1;
    };
    let next = letter(index + 1);
    let word_start = index == 0 || letter(index - 1).is_none();
    match (current, next) {
        ('ο', Some(('υ', false))) => ascii.push_str("ou"),
        ('α' | 'ε' | 'η', Some(('υ', false))) => {
            ascii.push_str(greek_single(current));
            // Before a vowel or a voiced consonant υ is v; before a voiceless one, or at
            // the end, f.
            let voiced = matches!(
                letter(index + 2),
                Some((
                    'α' | 'ε'
                        | 'η'
                        | 'ι'
                        | 'ο'
                        | 'υ'
                        | 'ω'
                        | 'β'
                        | 'γ'
                        | 'δ'
                        | 'ζ'
                        | 'λ'
                        | 'μ'
                        | 'ν'
                        | 'ρ',
                    _
                ))
            );
            ascii.push(if voiced { 'v' } else { 'f' });
        }
        ('γ', Some(('γ', _))) => ascii.push_str("ng"),
        ('γ', Some(('ξ', _))) => ascii.push_str("nx"),
        ('γ', Some(('χ', _))) => ascii.push_str("nch"),
        ('μ', Some(('π', _))) => {
            let word_end = letter(index + 2).is_none();
            ascii.push_str(if word_start || word_end { "b" } else { "mp" });
        }
        _ => {
            ascii.push_str(greek_single(current));
            return 1;
        }
    }
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrillic_by_icao_9303() {
        assert_eq!(to_ascii("Ольга"), "olga");
        assert_eq!(to_ascii("Щукин"), "shchukin");
        assert_eq!(to_ascii("Юлия"), "iuliia");
        assert_eq!(to_ascii("Ярослав"), "iaroslav");
        assert_eq!(to_ascii("Хабаров"), "khabarov");
        assert_eq!(to_ascii("Цветаева"), "tsvetaeva");
        assert_eq!(to_ascii("Їжак"), "izhak");
        assert_eq!(to_ascii("Љубица"), "ljubitsa");
    }

    #[test]
    fn greek_by_elot_743() {
        assert_eq!(to_ascii("Ελένη"), "eleni");
        assert_eq!(to_ascii("Γιώργος"), "giorgos");
        assert_eq!(to_ascii("Παπαδόπουλος"), "papadopoulos");
        assert_eq!(to_ascii("Ευάγγελος"), "evangelos");
        assert_eq!(to_ascii("Ευθυμίου"), "efthymiou");
        assert_eq!(to_ascii("Μπάμπης"), "bampis");
        assert_eq!(to_ascii("Θεόδωρος"), "theodoros");
        assert_eq!(to_ascii("Χρήστος"), "christos");
        assert_eq!(to_ascii("Ψαρρός"), "psarros");
        assert_eq!(to_ascii("Αϋπνία"), "aypnia");
    }

    #[test]
    fn other_scripts_through_the_general_table() {
        assert_eq!(to_ascii("Zoë"), "Zoe");
        assert_eq!(to_ascii("Straße"), "Strasse");
        assert_eq!(to_ascii("王"), "Wang");
    }
}
