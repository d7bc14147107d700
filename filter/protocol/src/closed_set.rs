//! Closed sets of names (results, reasons, classes): each is an enum whose variants
//! carry the one spelling used in stat labels, telemetry JSON and the scorer's store.

/// An enum with a fixed list of members, each with its name.
pub trait ClosedSet: Copy + Eq + 'static {
    /// Every member, in declaration order; per-member arrays are indexed by
    /// [`ClosedSet::index`].
    const ALL: &'static [Self];

    /// The name as it appears in stats, JSON and the store.
    fn name(self) -> &'static str;

    /// Position in [`ClosedSet::ALL`].
    fn index(self) -> usize;

    /// The member called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Every member's name, in order.
    fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|m| m.name())
    }
}

/// Declares a closed set: the enum, its list, its names, and serde as those names.
///
/// ```
/// outrider_protocol::closed_set! {
///     /// How a coin landed.
///     pub enum Side {
///         Heads => "heads",
///         Tails => "tails",
///     }
/// }
/// use outrider_protocol::ClosedSet;
/// assert_eq!(Side::from_name("tails"), Some(Side::Tails));
/// assert_eq!(Side::ALL.len(), 2);
/// ```
#[macro_export]
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::ClosedSet for $name {
            const ALL: &'static [Self] = &[$( $name::$variant ),+];

            fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $label ),+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str($crate::ClosedSet::name(*self))
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::ClosedSet::name(*self))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                <Self as $crate::ClosedSet>::from_name(&name).ok_or_else(|| {
                    let expected: Vec<&str> = <Self as $crate::ClosedSet>::names().collect();
                    ::serde::de::Error::custom(format!(
                        "unknown {} `{}`, expected one of: {}",
                        stringify!($name),
                        name,
                        expected.join(", ")
                    ))
                })
            }
        }
    };
}
