//! States and kinds stored by name: a Rust enum in the code, its name (a fixed string) in the
//! database, the JSON and the command line's output.
//!
//! [`stored_as!`](crate::stored_as) gives an enum of unit variants `as_str`, `parse` (`None` for a
//! name this build does not know), `ALL` and `Display`. Its `open` form is for an enum whose
//! last variant keeps a name it does not model (`Other(String)`): there `parse` always succeeds.
//! A listing that must still show a row written by a newer build holds the name as
//! [`Named`]: one this build knows, or the stored string as it was.
//!
//! `Display` writes the name as it is, without applying a width (`{:<10}` prints it unpadded,
//! as the command line's push listing always has); a padded column formats `as_str()`.

/// An enum of unit variants stored by name.
pub trait Stored: Copy + Sized + 'static {
    /// The name stored.
    fn as_str(self) -> &'static str;
    /// The variant a stored name names; `None` for one this build does not know.
    fn parse(s: &str) -> Option<Self>;
}

/// Gives an enum its stored names: `stored_as!(Status { Confirmed => "confirmed", … })` for an
/// enum of unit variants (`as_str`, `parse` → `Option`, `ALL`, `Display`, [`Stored`]), or
/// `stored_as!(open MsgType { Text => "text", … } else Other)` for one whose `Other(String)`
/// keeps any other name (`as_str(&self)`, `parse` → `Self`, `Display`).
#[macro_export]
macro_rules! stored_as {
    ($t:ident { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// Every variant, in declaration order.
            pub const ALL: [$t; [$($s),*].len()] = [$($t::$v),*];

            /// The name stored (and shown).
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),* }
            }

            /// The variant a stored name names; `None` for one this build does not know.
            pub fn parse(s: &str) -> Option<$t> {
                match s { $($s => Some($t::$v),)* _ => None }
            }
        }

        impl $crate::stored::Stored for $t {
            fn as_str(self) -> &'static str {
                $t::as_str(self)
            }

            fn parse(s: &str) -> Option<$t> {
                $t::parse(s)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (open $t:ident { $($v:ident => $s:literal),* $(,)? } else $other:ident) => {
        impl $t {
            /// The name stored (and shown): a modelled variant's, or the one `Other` kept.
            pub fn as_str(&self) -> &str {
                match self { $($t::$v => $s,)* $t::$other(name) => name }
            }

            /// The variant a name names; `Other` keeps a name this build does not model.
            pub fn parse(s: &str) -> $t {
                match s { $($s => $t::$v,)* other => $t::$other(other.to_owned()) }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A stored name as this build reads it: a `T` it knows, or the string as stored (a row a
/// newer build wrote), shown as it is. It serializes as the name either way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Named<T> {
    /// A name this build knows.
    Known(T),
    /// A name it does not, as stored.
    Unknown(String),
}

impl<T: Stored> Named<T> {
    /// The stored string, read.
    pub fn read(s: String) -> Named<T> {
        match T::parse(&s) {
            Some(t) => Named::Known(t),
            None => Named::Unknown(s),
        }
    }

    /// The variant, if this build knows it.
    pub fn known(&self) -> Option<T> {
        match self {
            Named::Known(t) => Some(*t),
            Named::Unknown(_) => None,
        }
    }

    /// The name, as stored.
    pub fn as_str(&self) -> &str {
        match self {
            Named::Known(t) => t.as_str(),
            Named::Unknown(s) => s,
        }
    }
}

impl<T: Stored> From<T> for Named<T> {
    fn from(t: T) -> Named<T> {
        Named::Known(t)
    }
}

impl<T: Stored> PartialEq<T> for Named<T> {
    fn eq(&self, other: &T) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<T: Stored> std::fmt::Display for Named<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: Stored> serde::Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Named;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Light {
        Red,
        Green,
    }
    crate::stored_as!(Light { Red => "red", Green => "green" });

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Shape {
        Round,
        Other(String),
    }
    crate::stored_as!(open Shape { Round => "round" } else Other);

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept_or_refused() {
        for l in Light::ALL {
            assert_eq!(Light::parse(l.as_str()), Some(l));
        }
        assert_eq!(Light::parse("blue"), None);
        // Display writes the name as it is (a width is not applied: `as_str()` for a column).
        assert_eq!(format!("{:<6}|{:<6}|", Light::Red, Light::Green.as_str()), "red|green |");
        assert_eq!(Shape::parse("round"), Shape::Round);
        assert_eq!(Shape::parse("square"), Shape::Other("square".into()));
        assert_eq!(Shape::parse("square").as_str(), "square");
        let unknown = Named::<Light>::read("blue".into());
        assert_eq!((unknown.known(), unknown.to_string()), (None, "blue".to_owned()));
        assert_eq!(Named::<Light>::read("red".into()), Light::Red);
        assert_eq!(serde_json::to_string(&Named::<Light>::read("blue".into())).unwrap(), r#""blue""#);
        assert_eq!(serde_json::to_string(&Named::from(Light::Green)).unwrap(), r#""green""#);
    }
}
