//! Kubernetes resource quantities (`500m`, `2`, `512Mi`, `1.5Gi`, `1e3`) and
//! what they mean for Docker: `resource_usage` is what a module *expects* to
//! use, so CPU becomes relative CPU shares and memory a soft reservation, not
//! limits.

/// The value of a quantity, in base units (cores, bytes).
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 2Gi)");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let valid_number = !number.is_empty()
        && number.chars().filter(|c| *c == '.').count() <= 1
        && number != "."
        && number.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !valid_number {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| bad())?;
            10f64.powi(power)
        }
        _ => return Err(bad()),
    };
    Ok(value * factor)
}

/// Docker's CPU shares for an expected CPU use: 1 CPU = 1024 shares.
pub fn cpu_shares(text: &str) -> Result<i64, String> {
    let cores = parse_quantity(text)?;
    // Docker refuses fewer than 2 shares.
    Ok(((cores * 1024.0).round() as i64).max(2))
}

/// Docker's memory reservation, in bytes, for an expected memory use.
pub fn memory_bytes(text: &str) -> Result<i64, String> {
    let bytes = parse_quantity(text)?;
    if bytes < 1.0 {
        return Err(format!("{text:?} is less than one byte"));
    }
    Ok(bytes.ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_to_docker_units() {
        assert_eq!(cpu_shares("500m"), Ok(512));
        assert_eq!(cpu_shares("2"), Ok(2048));
        assert_eq!(cpu_shares("0.25"), Ok(256));
        assert_eq!(cpu_shares("1m"), Ok(2), "Docker's minimum");
        assert_eq!(memory_bytes("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(memory_bytes("2Gi"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("1.5Ki"), Ok(1536));
        assert_eq!(memory_bytes("129e6"), Ok(129_000_000));
        assert_eq!(memory_bytes("128974848"), Ok(128_974_848));
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            "", "Mi", "512MB", "1.2.3", "-1", "one", "5 Gi", ".", "1e", "2x",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(memory_bytes("0"), Err("\"0\" is less than one byte".into()));
    }
}
