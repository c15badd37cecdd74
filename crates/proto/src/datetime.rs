//! XEP-0082: XMPP Date and Time Profiles — the DateTime profile, to and from [`SystemTime`].
//!
//! We write `CCYY-MM-DDThh:mm:ss.sssZ`: always UTC (XEP-0203 §2 requires it for delay
//! stamps) and always milliseconds, which every reader accepts and which keeps stamps of one
//! second in order.
//!
//! We read what §3.2 allows, which is XML Schema's `dateTime` with a mandatory time zone:
//! `Z` or an offset `±hh:mm` (applied, so the result is the same instant), and fractions of a
//! second of any length (kept to the nanosecond, the rest ignored as §3.2 permits). Field
//! ranges are checked, including the length of the month; XML Schema has no leap second
//! (`:60`), so neither do we. Years are the four digits of `CCYY`: the edge cases of §5 (before
//! 0000, after 9999) are refused.
//!
//! Dates are converted with H. Hinnant's days-from-civil algorithms (proleptic Gregorian
//! calendar), so no calendar dependency is needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// The XEP-0082 DateTime of `time` in UTC with milliseconds: `2002-09-10T23:08:25.123Z`.
///
/// Times before 1970 are written as such (`1969-07-21T02:56:15.000Z`).
pub fn format_datetime(time: SystemTime) -> String {
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            let secs = -(d.as_secs() as i64);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let (days, rem) = (secs.div_euclid(SECS_PER_DAY), secs.rem_euclid(SECS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    )
}

/// Reads an XEP-0082 DateTime (`1969-07-20T21:56:15-05:00`, `2002-09-10T23:08:25.123Z`);
/// `None` when it is not one.
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    // CCYY-MM-DDThh:mm:ss is fixed width.
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // Nanoseconds from the first nine digits; further precision is dropped.
        let mut scale = 100_000_000;
        for &c in fraction.iter().take(len.min(9)) {
            nanos += u32::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = &fraction[len..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            // XML Schema: offsets range from -14:00 to +14:00.
            if m > 59 || h > 14 || (h == 14 && m != 0) {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// The number written with these ASCII digits (all of them digits).
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant, `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March is 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant,
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, millis: u64) -> SystemTime {
        let t = if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        };
        t + Duration::from_millis(millis)
    }

    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(format_datetime(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_datetime(at(1_031_699_305, 123)),
            "2002-09-10T23:08:25.123Z"
        );
        assert_eq!(
            format_datetime(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000Z"
        );
        // XEP-0082 Example 2, before the epoch.
        assert_eq!(
            format_datetime(at(-14_159_025, 0)),
            "1969-07-21T02:56:15.000Z"
        );
        assert_eq!(format_datetime(at(-1, 500)), "1969-12-31T23:59:59.500Z");
    }

    #[test]
    fn parses_utc_offsets_and_fractions() {
        let moon = at(-14_159_025, 0);
        // XEP-0082 Examples 2 and 3: the same instant in UTC and in Houston.
        assert_eq!(parse_datetime("1969-07-21T02:56:15Z"), Some(moon));
        assert_eq!(parse_datetime("1969-07-20T21:56:15-05:00"), Some(moon));
        assert_eq!(parse_datetime("1969-07-21T04:56:15+02:00"), Some(moon));
        assert_eq!(parse_datetime("1969-07-21T02:56:15+00:00"), Some(moon));
        assert_eq!(
            parse_datetime("2002-09-10T23:08:25.123Z"),
            Some(at(1_031_699_305, 123))
        );
        assert_eq!(
            parse_datetime("2002-09-10T23:08:25.1Z"),
            Some(at(1_031_699_305, 100))
        );
        let nanos = parse_datetime("2002-09-10T23:08:25.123456789123Z");
        assert_eq!(
            nanos,
            Some(UNIX_EPOCH + Duration::new(1_031_699_305, 123_456_789))
        );
    }

    #[test]
    fn formatting_and_parsing_agree() {
        for secs in [
            0,
            951_782_400,
            951_868_799,
            4_102_444_800,
            -2_208_988_800,
            -1,
        ] {
            for millis in [0, 1, 999] {
                let t = at(secs, millis);
                assert_eq!(
                    parse_datetime(&format_datetime(t)),
                    Some(t),
                    "{secs}.{millis}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_datetime() {
        for bad in [
            "",
            "2002-09-10",
            "2002-09-10T23:08:25",       // the zone is mandatory
            "2002-09-10 23:08:25Z",      // 'T'
            "2002-9-10T23:08:25Z",       // fixed width
            "2002-13-10T23:08:25Z",      // month
            "2001-02-29T00:00:00Z",      // not a leap year
            "1900-02-29T00:00:00Z",      // nor is 1900
            "2002-09-31T00:00:00Z",      // September has 30 days
            "2002-09-10T24:00:00Z",      // hour
            "2002-09-10T23:60:00Z",      // minute
            "2002-09-10T23:59:60Z",      // no leap second in XML Schema
            "2002-09-10T23:08:25.Z",     // empty fraction
            "2002-09-10T23:08:25z",      // lower-case zone
            "2002-09-10T23:08:25+0500",  // offset needs its colon
            "2002-09-10T23:08:25+15:00", // offset out of range
            "2002-09-10T23:08:25Z ",     // trailing data
            "+002-09-10T23:08:25Z",      // sign in the year
            "２００２-09-10T23:08:25Z",  // non-ASCII digits
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        assert!(parse_datetime("2000-02-29T00:00:00Z").is_some());
    }
}
