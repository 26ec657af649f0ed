//! Phone numbers as the user typed them, normalized to E.164.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use phonenumber::Mode;

/// A region (ISO 3166-1 alpha-2, e.g. `PL`) used to read numbers typed
/// without a country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(country::Id);

impl FromStr for Region {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        country::Id::from_str(&s.to_ascii_uppercase())
            .map(Region)
            .map_err(|_| PhoneError::UnknownRegion(s.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A valid phone number in E.164 form, e.g. `+48555555555`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("not a phone number")]
    NotANumber,
    #[error("no country code: write the number as +<country code><number>")]
    NoCountryCode,
    #[error("not a valid phone number for its region")]
    InvalidNumber,
    #[error("unknown region {0:?}: use an ISO 3166-1 alpha-2 code such as PL or US")]
    UnknownRegion(String),
}

/// Longest input we try to parse: E.164 has at most 15 digits, and the
/// slack covers spaces, dashes, brackets and a `tel:` prefix.
const MAX_INPUT: usize = 64;

impl Phone {
    /// Normalizes what a user typed. Numbers without a country code are
    /// read in `default_region`, and refused when there is none.
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Phone, PhoneError> {
        let input = input.trim();
        if input.is_empty() || input.len() > MAX_INPUT {
            return Err(PhoneError::NotANumber);
        }
        let number = phonenumber::parse(default_region.map(|r| r.0), input).map_err(|_| {
            if default_region.is_none() && !input.starts_with('+') {
                PhoneError::NoCountryCode
            } else {
                PhoneError::NotANumber
            }
        })?;
        if !number.is_valid() {
            return Err(PhoneError::InvalidNumber);
        }
        Ok(Phone(number.format().mode(Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl() -> Option<Region> {
        Some("PL".parse().unwrap())
    }

    #[test]
    fn normalizes_local_and_international_forms() {
        for typed in [
            "+48555555555",
            "555 555 555",
            "555-555-555",
            "+48 555 555 555",
            "0048555555555",
        ] {
            assert_eq!(
                Phone::parse(typed, pl()).unwrap().as_str(),
                "+48555555555",
                "{typed}"
            );
        }
    }

    #[test]
    fn region_only_applies_without_country_code() {
        let us = Some("us".parse::<Region>().unwrap());
        assert_eq!(
            Phone::parse("(201) 555-0123", us).unwrap().as_str(),
            "+12015550123"
        );
        assert_eq!(
            Phone::parse("+48555555555", us).unwrap().as_str(),
            "+48555555555"
        );
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for bad in ["", "   ", "hello", "12", "+", "'; DROP TABLE users; --"] {
            assert!(Phone::parse(bad, pl()).is_err(), "{bad:?}");
        }
        assert_eq!(
            Phone::parse(&"5".repeat(200), pl()),
            Err(PhoneError::NotANumber)
        );
    }

    #[test]
    fn rejects_numbers_invalid_for_their_region() {
        assert_eq!(
            Phone::parse("+48 123", pl()),
            Err(PhoneError::InvalidNumber)
        );
    }

    #[test]
    fn without_a_region_the_country_code_is_required() {
        assert_eq!(
            Phone::parse("+48 555 555 555", None).unwrap().as_str(),
            "+48555555555"
        );
        assert_eq!(
            Phone::parse("555 555 555", None),
            Err(PhoneError::NoCountryCode)
        );
    }

    #[test]
    fn unknown_region_is_an_error() {
        assert!(matches!(
            "XX".parse::<Region>(),
            Err(PhoneError::UnknownRegion(_))
        ));
    }
}
