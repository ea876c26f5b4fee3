//! Numbers in text, read the way the script and GDAL read them: Python's `int()` for the
//! ghost area's size, `CPLAtofM()` for the nodata value.

/// Python's `int(s)` for a base-10 string; `None` where Python raises `ValueError`.
pub(crate) fn py_int(s: &str) -> Option<i64> {
    let is_space = |c: char| {
        matches!(
            c,
            '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f' | ' ' | '\u{85}' | '\u{a0}'
        )
    };
    let t = s.trim_matches(is_space);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for c in digits.chars() {
        match c {
            '_' => {}
            '0'..='9' => {
                value = value
                    .checked_mul(10)?
                    .checked_add(i64::from(c as u8 - b'0'))?
            }
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// `CPLAtofM()`: the longest leading part of `s` that is a number, 0 if there is none.
pub(crate) fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    let lower = t.to_ascii_lowercase();
    for (word, value) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("infinity", f64::INFINITY),
    ] {
        for (sign, v) in [("", value), ("+", value), ("-", -value)] {
            if lower == format!("{sign}{word}") {
                return v;
            }
        }
    }
    (1..=t.len())
        .rev()
        .filter(|&i| t.is_char_boundary(i))
        .find_map(|i| {
            let p = &t[..i];
            // Rust accepts forms strtod does not ("inf" words are handled above).
            if p.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
            {
                p.parse::<f64>().ok()
            } else {
                None
            }
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_and_atof() {
        assert_eq!(py_int("000123"), Some(123));
        assert_eq!(py_int(" 12 "), Some(12));
        assert_eq!(py_int("1_000"), Some(1000));
        assert_eq!(py_int("-00001"), Some(-1));
        assert_eq!(py_int("12x456"), None);
        assert_eq!(py_int("_1"), None);
        assert_eq!(py_int(""), None);
        assert_eq!(atof("-9999"), -9999.0);
        assert_eq!(atof(" 1.5e3xyz"), 1500.0);
        assert!(atof("nan").is_nan());
        assert_eq!(atof("abc"), 0.0);
    }
}
