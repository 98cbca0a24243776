//! The wall clock: decoding the CMOS real-time clock's registers into Unix time.
//!
//! The boot core reads the RTC once (`time::init`, guest only) and the kernel then counts
//! wall time as that reading plus the TSC clock's time since boot, so that records leaving
//! the box (IPFIX flow times, the management page) carry real dates. This module holds the
//! pure part, tested on the host: register decoding (BCD or binary, 12- or 24-hour) and the
//! civil-date arithmetic. It does no I/O.

/// The RTC registers as read: seconds, minutes, hours, day of month, month, year (two
/// digits), century (0 when the firmware names no century register), and status register B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcRegs {
    /// Register 0x00.
    pub second: u8,
    /// Register 0x02.
    pub minute: u8,
    /// Register 0x04 (bit 7 is PM in 12-hour mode).
    pub hour: u8,
    /// Register 0x07.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09.
    pub year: u8,
    /// The century register named by the FADT, or 0 (then 20xx is assumed).
    pub century: u8,
    /// Status register B: bit 2 set = binary (else BCD), bit 1 set = 24-hour mode.
    pub status_b: u8,
}

/// Why an RTC reading is not a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// A field is out of its range after decoding (e.g. month 13, or BCD digits above 9).
    OutOfRange(&'static str),
}

impl core::fmt::Display for RtcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RtcError::OutOfRange(what) => write!(f, "the RTC's {what} is out of range"),
        }
    }
}

fn bcd(v: u8, what: &'static str) -> Result<u8, RtcError> {
    let (hi, lo) = (v >> 4, v & 0x0f);
    if hi > 9 || lo > 9 {
        return Err(RtcError::OutOfRange(what));
    }
    Ok(hi * 10 + lo)
}

/// Seconds since 1970-01-01 00:00:00 UTC of a reading (the RTC is taken to keep UTC, as
/// firmware on servers and QEMU's default do).
pub fn unix_seconds(r: &RtcRegs) -> Result<u64, RtcError> {
    let binary = r.status_b & 0x04 != 0;
    let h24 = r.status_b & 0x02 != 0;
    let dec = |v: u8, what| if binary { Ok(v) } else { bcd(v, what) };
    let pm = !h24 && r.hour & 0x80 != 0;
    let second = dec(r.second, "second")?;
    let minute = dec(r.minute, "minute")?;
    let mut hour = dec(r.hour & 0x7f, "hour")?;
    if !h24 {
        if !(1..=12).contains(&hour) {
            return Err(RtcError::OutOfRange("hour"));
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    let day = dec(r.day, "day")?;
    let month = dec(r.month, "month")?;
    let year2 = dec(r.year, "year")?;
    let century = match r.century {
        0 => 20,
        c => dec(c, "century")?,
    };
    if second > 59 || minute > 59 || hour > 23 || year2 > 99 {
        return Err(RtcError::OutOfRange("time of day or year"));
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year2, century, month) {
        return Err(RtcError::OutOfRange("date"));
    }
    let year = century as i64 * 100 + year2 as i64;
    let days = days_from_civil(year, month as i64, day as i64);
    if days < 0 {
        return Err(RtcError::OutOfRange("year"));
    }
    Ok(days as u64 * 86_400 + hour as u64 * 3600 + minute as u64 * 60 + second as u64)
}

fn days_in_month(year2: u8, century: u8, month: u8) -> u8 {
    let year = century as u32 * 100 + year2 as u32;
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bcd_regs(y: u8, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> RtcRegs {
        RtcRegs {
            second: s,
            minute: mi,
            hour: h,
            day: d,
            month: mo,
            year: y,
            century: 0,
            status_b: 0x02, // BCD, 24-hour: what SeaBIOS and QEMU set
        }
    }

    #[test]
    fn bcd_24_hour_readings_give_unix_time() {
        // 2026-12-02 13:10:05 UTC = 1796217005 (date -u -d '2026-12-02 13:10:05' +%s).
        let r = bcd_regs(0x26, 0x12, 0x02, 0x13, 0x10, 0x05);
        assert_eq!(unix_seconds(&r), Ok(1_796_217_005));
        // The epoch itself needs century 19.
        let r = RtcRegs {
            century: 0x19,
            ..bcd_regs(0x70, 0x01, 0x01, 0, 0, 0)
        };
        assert_eq!(unix_seconds(&r), Ok(0));
        // A leap day: 2024-02-29 23:59:59 = 1709251199.
        let r = bcd_regs(0x24, 0x02, 0x29, 0x23, 0x59, 0x59);
        assert_eq!(unix_seconds(&r), Ok(1_709_251_199));
    }

    #[test]
    fn binary_and_12_hour_modes_decode() {
        // Binary, 12-hour: 1:10:05 PM = 13:10:05.
        let r = RtcRegs {
            second: 5,
            minute: 10,
            hour: 0x80 | 1,
            day: 2,
            month: 12,
            year: 26,
            century: 0,
            status_b: 0x04,
        };
        assert_eq!(unix_seconds(&r), Ok(1_796_217_005));
        // 12 AM is midnight, 12 PM noon (BCD, 12-hour).
        let midnight = RtcRegs {
            status_b: 0,
            ..bcd_regs(0x26, 0x12, 0x02, 0x12, 0, 0)
        };
        let noon = RtcRegs {
            hour: 0x80 | 0x12,
            ..midnight
        };
        assert_eq!(unix_seconds(&midnight), Ok(1_796_169_600));
        assert_eq!(unix_seconds(&noon), Ok(1_796_169_600 + 12 * 3600));
    }

    #[test]
    fn impossible_readings_are_errors() {
        assert_eq!(
            unix_seconds(&bcd_regs(0x26, 0x13, 0x01, 0, 0, 0)),
            Err(RtcError::OutOfRange("date"))
        );
        assert_eq!(
            unix_seconds(&bcd_regs(0x26, 0x02, 0x29, 0, 0, 0)),
            Err(RtcError::OutOfRange("date")),
            "2026 is not a leap year"
        );
        assert_eq!(
            unix_seconds(&bcd_regs(0x26, 0x1a, 0x01, 0, 0, 0)),
            Err(RtcError::OutOfRange("month"))
        );
        assert_eq!(
            unix_seconds(&bcd_regs(0x26, 0x12, 0x01, 0x24, 0, 0)),
            Err(RtcError::OutOfRange("time of day or year"))
        );
    }
}
