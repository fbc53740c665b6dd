//! Build times: `SOURCE_DATE_EPOCH` for reproducible outputs, and UTC
//! timestamps in the ISO 8601 form that SPDX and reports use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns `SOURCE_DATE_EPOCH` (seconds since 1970-01-01 UTC) when it is
/// set to a number, else the current time.
pub fn source_date_epoch_or_now() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// Formats seconds since 1970-01-01 UTC as `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_utc(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let seconds_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date.
///
/// The calendar is counted in 400-year eras that start on March 1, so that
/// the leap day falls at the end of each counted year.
fn civil_date(days_since_1970: u64) -> (u64, u64, u64) {
    // 719_468 days lie between 0000-03-01 and 1970-01-01.
    let days = days_since_1970 + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_format_of_known_times() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(format_utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn utc_format_matches_date_for_every_month_start() {
        // The first of each month of 2024, a leap year, checked against
        // values from `date -u -d 2024-MM-01 +%s`.
        let starts = [
            (1_704_067_200, "2024-01-01"),
            (1_706_745_600, "2024-02-01"),
            (1_709_251_200, "2024-03-01"),
            (1_711_929_600, "2024-04-01"),
            (1_714_521_600, "2024-05-01"),
            (1_717_200_000, "2024-06-01"),
            (1_719_792_000, "2024-07-01"),
            (1_722_470_400, "2024-08-01"),
            (1_725_148_800, "2024-09-01"),
            (1_727_740_800, "2024-10-01"),
            (1_730_419_200, "2024-11-01"),
            (1_733_011_200, "2024-12-01"),
        ];
        for (seconds, date) in starts {
            assert_eq!(format_utc(seconds), format!("{date}T00:00:00Z"));
        }
    }
}
