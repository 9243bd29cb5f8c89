//! Sidecar settings that come from daprd's flags and environment (spec §9).

/// Parses a byte size the way daprd's `--max-body-size` takes it: a Kubernetes quantity such as
/// `4Mi`, `512Ki`, `1Gi`, `10M`, `100k` or a plain number of bytes.
///
/// # Errors
/// A message naming the input when it is not such a quantity or does not fit in `usize`.
pub fn parse_byte_size(input: &str) -> Result<usize, String> {
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {input:?}: unknown unit {unit:?} (use Ki, Mi, Gi, k, M, G or bytes)"
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| format!("invalid size {input:?}: expected a number"))?;
    #[allow(clippy::cast_precision_loss)]
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 {
        return Err(format!("invalid size {input:?}: out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as usize)
}

/// One `--scheduler-host-address` entry as daprd reads it: surrounding quotes and blanks are
/// trimmed, so `'""'`, `"'   '"` and `'"   "'` (a shell quoting an empty value twice) all come
/// out empty, which disables the scheduler instead of being an invalid address.
pub fn scheduler_address(input: &str) -> &str {
    input.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_blank_scheduler_addresses_are_empty() {
        for blank in ["", "   ", "\"\"", "'   '", "\"   \"", "' \" \" '"] {
            assert_eq!(scheduler_address(blank), "", "{blank:?}");
        }
        assert_eq!(scheduler_address(" \"localhost:50006\" "), "localhost:50006");
        assert_eq!(scheduler_address("'10.0.0.1:50006'"), "10.0.0.1:50006");
    }

    #[test]
    fn parses_daprd_sizes() {
        assert_eq!(parse_byte_size("4Mi"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_byte_size("512Ki"), Ok(512 * 1024));
        assert_eq!(parse_byte_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_byte_size("10M"), Ok(10_000_000));
        assert_eq!(parse_byte_size("100k"), Ok(100_000));
        assert_eq!(parse_byte_size("1234"), Ok(1234));
        assert_eq!(parse_byte_size("1.5Mi"), Ok(1_572_864));
    }

    #[test]
    fn rejects_garbage_with_the_input_named() {
        for bad in ["", "Mi", "4MB", "-1", "four", "1e999"] {
            let err = parse_byte_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
