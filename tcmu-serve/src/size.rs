//! Sizes on the command line: `512MiB`, `2GiB`, `4096`, `1T`.

/// Parse a byte count with an optional binary unit (K/M/G/T, also written
/// KiB/MiB/GiB/TiB). Decimal units (MB, GB) are refused as ambiguous.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected a number such as 512MiB"
        ));
    }
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?} (use K, M, G, T or KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: number too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("8k"), Ok(8192));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            parse_size("banana")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(parse_size("5MB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("").is_err());
        assert!(
            parse_size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("17000000T").unwrap_err().contains("too large"));
    }
}
