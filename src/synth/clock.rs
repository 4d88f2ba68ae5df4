//! Time in the generator: Windows FILETIME ticks (100 ns since 1601-01-01 UTC), the sensor's own
//! unit, and the text forms the server uses in JSON (`2015-11-16T18:14:28.819Z`) and in bundle
//! member names (`2017-01-19-04-11-11`).

/// FILETIME ticks per millisecond.
pub(crate) const TICKS_PER_MS: i64 = 10_000;
/// FILETIME ticks per second.
pub(crate) const TICKS_PER_SEC: i64 = 10_000_000;
/// Milliseconds from 1601-01-01 to 1970-01-01.
const EPOCH_DIFF_MS: i64 = 11_644_473_600_000;

pub(crate) fn filetime_from_unix_ms(ms: i64) -> i64 {
    (ms + EPOCH_DIFF_MS) * TICKS_PER_MS
}

pub(crate) fn unix_ms_from_filetime(ft: i64) -> i64 {
    ft / TICKS_PER_MS - EPOCH_DIFF_MS
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Broken-down UTC time of a Unix millisecond instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

pub(crate) fn civil(ms: i64) -> Civil {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: (rem / 3_600_000) as u32,
        minute: (rem / 60_000 % 60) as u32,
        second: (rem / 1000 % 60) as u32,
        milli: (rem % 1000) as u32,
    }
}

/// `2015-11-16T18:14:28.819Z`, the server's Solr timestamp form.
pub(crate) fn iso_ms(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

/// `2016-07-19T16:26:49.830563Z`, the alert `created_time` form (microseconds).
pub(crate) fn iso_us(ms: i64, micros: u32) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.milli,
        micros % 1000
    )
}

/// `2017-01-19-04-11-11`, as in sensor bundle member names.
pub(crate) fn dashed(ms: i64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2:46 PM 9/29/2015`, the module info `utf8_DigSig_SignTime` form.
pub(crate) fn sign_time(ms: i64) -> String {
    let c = civil(ms);
    let (h12, ampm) = match c.hour {
        0 => (12, "AM"),
        1..=11 => (c.hour, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    format!(
        "{h12}:{:02} {ampm} {}/{}/{}",
        c.minute, c.month, c.day, c.year
    )
}

/// Parse a start time: Unix seconds (`1709539200`) or UTC `YYYY-MM-DDTHH:MM:SSZ` (the `T` may be
/// a space, the `Z` may be omitted, seconds may be omitted). Returns Unix milliseconds.
pub(crate) fn parse_start(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next().unwrap_or("0").parse().ok()?;
    let sec_text = t.next().unwrap_or("0");
    let (second, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let second: i64 = second.parse().ok()?;
    // Fractions of a second, as `iso_ms` writes them: milliseconds, further digits ignored.
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let milli: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !(1601..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Reject 2024-02-31 and friends: the day must survive the round trip.
    let (ry, rm, rd) = civil_from_days(days);
    if (ry, rm, rd) != (year, month, day) {
        return None;
    }
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_matches_the_documented_fixture_example() {
        // docs/cb-bus.md §4: 130921710236713495 → 1447697423 (Unix seconds, truncated).
        assert_eq!(
            unix_ms_from_filetime(130_921_710_236_713_495) / 1000,
            1_447_697_423
        );
        assert_eq!(filetime_from_unix_ms(0), 116_444_736_000_000_000);
        let ms = 1_447_697_423_671;
        assert_eq!(unix_ms_from_filetime(filetime_from_unix_ms(ms)), ms);
    }

    #[test]
    fn text_forms() {
        let ms = parse_start("2015-11-16T18:14:28Z").unwrap() + 819;
        assert_eq!(iso_ms(ms), "2015-11-16T18:14:28.819Z");
        assert_eq!(iso_us(ms, 563), "2015-11-16T18:14:28.819563Z");
        assert_eq!(dashed(ms), "2015-11-16-18-14-28");
        assert_eq!(
            sign_time(parse_start("2015-09-29 14:46").unwrap()),
            "2:46 PM 9/29/2015"
        );
        assert_eq!(
            sign_time(parse_start("2015-09-29T00:05:00").unwrap()),
            "12:05 AM 9/29/2015"
        );
        assert_eq!(parse_start("1709539200"), Some(1_709_539_200_000));
        // Regression: the canonical config text writes milliseconds, parsing must take them.
        assert_eq!(parse_start("2015-11-16T18:14:28.819Z"), Some(ms));
        assert_eq!(parse_start(&iso_ms(ms)), Some(ms));
        assert_eq!(parse_start("2015-11-16T18:14:28.8Z"), Some(ms - 19));
        assert_eq!(parse_start("2015-11-16T18:14:28.x"), None);
        assert_eq!(parse_start("2024-03-04T08:00:00Z"), Some(1_709_539_200_000));
        assert_eq!(parse_start("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_start("2024-13-01"), None);
        assert_eq!(parse_start("yesterday"), None);
        assert_eq!(civil(-1).year, 1969);
    }
}
