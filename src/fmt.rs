//! How dtsflac writes durations, sizes, speeds and times for people (the
//! terminal, the log, the panel), in one place so they read the same
//! everywhere.

use std::time::{SystemTime, UNIX_EPOCH};

/// A length of audio or time left: `1:05`, `1:02:03`; under ten seconds
/// (test clips, jingles) with hundredths, `0:03.25`.
pub fn duration(seconds: f64) -> String {
    // Test clips and jingles are shorter than a second: show tenths there.
    if seconds < 10.0 {
        return format!("0:{:05.2}", seconds.max(0.0));
    }
    clock(seconds)
}

/// The compact form of `duration` for the 128x64 panel: whole seconds
/// always, `0:03`, `1:05`, `1:02:03`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A conversion speed, seconds of audio per second: `12.3x`.
pub fn speed(x: f64) -> String {
    format!("{x:.1}x")
}

/// A size for people: `512 B`, `1.5 MB`, `4.7 GB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Memory as the kernel counts it (MiB, whole): `3794 MB`.
pub fn memory_mb(bytes: u64) -> String {
    format!("{} MB", bytes >> 20)
}

/// A process's memory from `/proc` (KiB) in MiB, one decimal: `12.5 MB`.
pub fn kib_as_mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

/// UTC time as RFC 3339 (civil-from-days, so no date crate is needed).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_have_hundredths_only_when_short() {
        for (seconds, shown) in [
            (0.0, "0:00.00"),
            (-1.0, "0:00.00"),
            (3.254, "0:03.25"),
            (9.5, "0:09.50"),
            (10.0, "0:10"),
            (65.4, "1:05"),
            (3723.0, "1:02:03"),
        ] {
            assert_eq!(duration(seconds), shown);
        }
    }

    #[test]
    fn the_panel_clock_has_whole_seconds() {
        for (seconds, shown) in [
            (-5.0, "0:00"),
            (3.254, "0:03"),
            (59.6, "1:00"),
            (3599.4, "59:59"),
            (3600.0, "1:00:00"),
            (36_061.0, "10:01:01"),
        ] {
            assert_eq!(clock(seconds), shown);
        }
        // Beyond ten seconds the two forms agree.
        for s in [10.0, 61.2, 7384.9] {
            assert_eq!(clock(s), duration(s));
        }
    }

    #[test]
    fn speeds_have_one_decimal() {
        assert_eq!(speed(0.0), "0.0x");
        assert_eq!(speed(12.345), "12.3x");
        assert_eq!(format!("{:>8}", speed(7.06)), "    7.1x");
    }

    #[test]
    fn sizes_use_powers_of_1000() {
        for (n, shown) in [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 KB"),
            (1_500_000, "1.5 MB"),
            (4_700_000_000, "4.7 GB"),
            (2_000_000_000_000_000, "2000.0 TB"),
        ] {
            assert_eq!(bytes(n), shown);
        }
    }

    #[test]
    fn memory_is_in_mib() {
        assert_eq!(memory_mb(3 << 20), "3 MB");
        assert_eq!(memory_mb((1 << 20) - 1), "0 MB");
        assert_eq!(kib_as_mb(12_800), "12.5 MB");
        assert_eq!(kib_as_mb(0), "0.0 MB");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_433_171_250);
        // Checked with `date -u -d @1795433171`.
        assert_eq!(timestamp(t), "2026-11-23T11:26:11.250Z");
        // A leap day.
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
