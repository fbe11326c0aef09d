//! What the tests of the mbox writers (mail.local, mail.mboxfile) share:
//! an mbox split into its messages, and the From_ line's date computed
//! independently of the programs under test.

use std::time::{SystemTime, UNIX_EPOCH};

/// ctime(3) of `t` in UTC, computed here independently of the helper.
pub fn ctime_utc(t: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {}\n",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        y
    )
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Splits an mbox into its From_ lines and the messages after them. A
/// From_ line is a line starting "From " at the start of the file or
/// after an empty line: mail.local quotes only those in a message.
pub fn mbox_split(mbox: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut eline = true;
    for line in mbox.split_inclusive(|&c| c == b'\n') {
        if eline && line.starts_with(b"From ") {
            out.push((String::from_utf8(line.to_vec()).unwrap(), Vec::new()));
        } else {
            out.last_mut()
                .expect("mbox starts with From_")
                .1
                .extend(line);
        }
        eline = line == b"\n";
    }
    out
}
