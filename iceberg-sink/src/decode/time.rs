//! RFC 3339 date-times and dates (JSON Schema `format: date-time` / `date`) to Iceberg units.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} {s:?}"));
    }
    s.parse().map_err(|_| format!("bad {what} {s:?}"))
}

fn date_parts(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("expected YYYY-MM-DD".into());
    }
    let y = digits(&s[0..4], "year")?;
    let m = digits(&s[5..7], "month")?;
    let d = digits(&s[8..10], "day")?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("month {m} out of range")),
    };
    if d == 0 || d > max {
        return Err(format!("day {d} out of range"));
    }
    Ok(days_from_civil(i64::from(y), m, d))
}

/// `YYYY-MM-DD` to days since the epoch.
pub(crate) fn parse_date(s: &str) -> Result<i32, String> {
    i32::try_from(date_parts(s)?).map_err(|_| "date out of range".to_string())
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` to microseconds since the epoch (UTC).
/// Digits beyond microseconds are truncated.
pub(crate) fn parse_rfc3339_micros(s: &str) -> Result<i64, String> {
    if s.len() < 20 || !s.is_char_boundary(10) || !s.is_char_boundary(19) {
        return Err("expected YYYY-MM-DDTHH:MM:SS plus a zone".into());
    }
    let days = date_parts(&s[..10])?;
    let sep = s.as_bytes()[10];
    if !matches!(sep, b'T' | b't' | b' ') {
        return Err("expected T between date and time".into());
    }
    let t = &s[11..19];
    let tb = t.as_bytes();
    if tb[2] != b':' || tb[5] != b':' {
        return Err("expected HH:MM:SS".into());
    }
    let hh = digits(&t[0..2], "hour")?;
    let mm = digits(&t[3..5], "minute")?;
    let ss = digits(&t[6..8], "second")?;
    if hh > 23 || mm > 59 || ss > 60 {
        return Err("time of day out of range".into());
    }
    let mut rest = &s[19..];
    let mut micros: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err("empty fraction of a second".into());
        }
        let mut scale = 100_000;
        for b in frac[..n].bytes().take(6) {
            micros += i64::from(b - b'0') * scale;
            scale /= 10;
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            if rest.as_bytes()[3] != b':' {
                return Err(format!("bad zone offset {rest:?}"));
            }
            let oh = digits(&rest[1..3], "offset hour")?;
            let om = digits(&rest[4..6], "offset minute")?;
            if oh > 23 || om > 59 {
                return Err(format!("zone offset {rest:?} out of range"));
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if rest.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(format!("bad zone {rest:?} (expected Z or +HH:MM)")),
    };
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss) - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2024-02-29"), Ok(19_782));
        assert!(parse_date("2023-02-29").is_err());
        assert!(parse_date("2024-13-01").is_err());
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_micros("2024-05-06T07:08:09.123456789Z"),
            Ok(1_714_979_289_123_456)
        );
        assert_eq!(
            parse_rfc3339_micros("2024-05-06T09:08:09.5+02:00"),
            Ok(1_714_979_289_500_000)
        );
        assert_eq!(parse_rfc3339_micros("1969-12-31T23:59:59Z"), Ok(-1_000_000));
        for bad in [
            "",
            "2024-05-06",
            "2024-05-06T07:08:09",
            "2024-05-06T07:08:09+0200",
            "2024-05-06T25:00:00Z",
            "2024-05-06T07:08:09.Z",
            "2024-05-0éT07:08:09Z",
        ] {
            assert!(parse_rfc3339_micros(bad).is_err(), "{bad}");
        }
    }
}
