//! iSCSI qualified names: the rules, and the default name of a backstore's
//! target.

/// The naming authority of default target names (`iqn.<date>.<reversed domain>`).
const DEFAULT_IQN_PREFIX: &str = "iqn.2026-11.org.tcmu-rs";

/// The longest iSCSI name allowed (RFC 7143: 223 bytes).
const MAX_IQN_LEN: usize = 223;

/// The default target name for a backstore: lowercase (iSCSI names are),
/// with '_' (not allowed in iSCSI names) turned into '-'.
pub fn default_iqn(backstore_name: &str) -> String {
    let suffix: String = backstore_name
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    format!("{DEFAULT_IQN_PREFIX}:{suffix}")
}

/// Check an iSCSI qualified name: `iqn.YYYY-MM.reversed.domain[:anything]`,
/// lowercase letters, digits, '-', '.' and ':' only.
pub fn check_iqn(iqn: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid IQN {iqn:?}: {why} (want iqn.YYYY-MM.reversed.domain[:name])"
        ))
    };
    if iqn.len() > MAX_IQN_LEN {
        return bad("longer than 223 bytes");
    }
    if let Some(c) = iqn
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
    {
        return bad(&format!(
            "character {c:?} not allowed (lowercase letters, digits, '-', '.', ':')"
        ));
    }
    let Some(rest) = iqn.strip_prefix("iqn.") else {
        return bad("does not start with \"iqn.\"");
    };
    let date = rest.get(..7).unwrap_or("");
    let (year, month) = date.split_once('-').unwrap_or(("", ""));
    let month_ok = month.len() == 2 && matches!(month.parse::<u8>(), Ok(1..=12));
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) || !month_ok {
        return bad("no YYYY-MM date after \"iqn.\"");
    }
    let Some(rest) = rest[7..].strip_prefix('.') else {
        return bad("no '.' and reversed domain after the date");
    };
    let (domain, name) = match rest.split_once(':') {
        Some((domain, name)) => (domain, Some(name)),
        None => (rest, None),
    };
    if domain.is_empty()
        || domain
            .split('.')
            .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return bad("the reversed domain name is malformed");
    }
    if name.is_some_and(str::is_empty) {
        return bad("nothing after ':'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configfs::valid_name;

    #[test]
    fn iqns_are_validated() {
        for good in [
            "iqn.2026-11.org.tcmu-rs:disk0",
            "iqn.2003-01.org.linux-iscsi.host.x8664:sn.1234",
            "iqn.1994-05.com.redhat",
            "iqn.2026-12.a:b:c",
        ] {
            assert_eq!(check_iqn(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "does not start"),
            ("eui.0123456789abcdef", "does not start"),
            ("naa.50014050000000a1", "does not start"),
            ("iqn.26-11.org.x", "YYYY-MM"),
            ("iqn.2026-13.org.x", "YYYY-MM"),
            ("iqn.2026-00.org.x", "YYYY-MM"),
            ("iqn.2026-1.org.x", "YYYY-MM"),
            ("iqn.2026", "YYYY-MM"),
            ("iqn.2026-11", "reversed domain after the date"),
            ("iqn.2026-11org.x", "reversed domain after the date"),
            ("iqn.2026-11.", "malformed"),
            ("iqn.2026-11.org..x", "malformed"),
            ("iqn.2026-11.-org.x", "malformed"),
            ("iqn.2026-11.org.x:", "nothing after"),
            ("iqn.2026-11.Org.x", "'O' not allowed"),
            ("iqn.2026-11.org.x:a_b", "'_' not allowed"),
            ("iqn.2026-11.org.x:a/b", "'/' not allowed"),
            ("iqn.2026-11.org.x:a b", "' ' not allowed"),
        ] {
            let err = check_iqn(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let long = format!("iqn.2026-11.org.x:{}", "a".repeat(210));
        assert!(check_iqn(&long).unwrap_err().contains("223"));
    }

    #[test]
    fn default_iqn_is_valid_for_any_backstore_name() {
        assert_eq!(default_iqn("iscsi0"), "iqn.2026-11.org.tcmu-rs:iscsi0");
        assert_eq!(
            default_iqn("My_Disk.1"),
            "iqn.2026-11.org.tcmu-rs:my-disk.1"
        );
        for name in ["a", "tcmurs-1234", "X_Y-z.9", &"n".repeat(64)] {
            assert!(valid_name(name));
            assert_eq!(check_iqn(&default_iqn(name)), Ok(()), "{name}");
        }
    }
}
