//! Exact decimals of any size, as PostgreSQL's `numeric` holds them: compared by value
//! (`12.50 == 12.5`), rendered as given.

use std::cmp::Ordering;
use std::fmt;

/// Most digits a decimal may have once its exponent is expanded (PostgreSQL's own limit is
/// 131072 before and 16383 after the point; this bounds what one filter value can cost).
const MAX_DIGITS: usize = 2000;

/// An exact decimal number.
#[derive(Debug, Clone)]
pub struct Decimal {
    /// The text as given (a PostgreSQL `numeric` renders it with its scale: `12.50`).
    text: String,
    negative: bool,
    /// Integer digits without leading zeros.
    int: String,
    /// Fraction digits without trailing zeros.
    frac: String,
}

impl Decimal {
    /// Parses `-12.50`, `1e41`, `+.5`; `None` when it is not a finite decimal.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let (negative, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let digits = format!("{int}{frac}");
        let point = int.len() as i64 + exponent;
        if point.unsigned_abs() as usize > MAX_DIGITS || digits.len() > MAX_DIGITS {
            return None;
        }
        let (int, frac) = if point <= 0 {
            (
                String::new(),
                format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_owned(),
                digits[point as usize..].to_owned(),
            )
        };
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        let zero = int.is_empty() && frac.is_empty();
        Some(Self {
            text: text.trim().to_owned(),
            negative: negative && !zero,
            int,
            frac,
        })
    }

    /// Compares magnitudes.
    fn cmp_abs(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_abs(other),
            (true, true) => other.cmp_abs(self),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).expect("a decimal")
    }

    #[test]
    fn decimals_compare_by_value_whatever_their_notation() {
        assert_eq!(d("12.50"), d("12.5"));
        assert_eq!(d("1e2"), d("100"));
        assert_eq!(d("-0.0"), d("0"));
        assert!(d("-2") < d("-1.5"));
        assert!(d("0.001") < d("0.01"));
        assert!(
            d("12345678901234567890123456789.123456789")
                > d("12345678901234567890123456789.12345678")
        );
        assert!(d("1e41") > d("99999999999999999999999999999999999999999"));
    }

    #[test]
    fn what_is_not_a_finite_decimal_is_refused() {
        for bad in [
            "", "-", ".", "1.2.3", "abc", "1e", "NaN", "Infinity", "1e999999",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(d("12.50").to_string(), "12.50");
    }
}
