//! A macro for Rust enums that mirror groups of C `#define` values.

/// Declares an enum whose variants map one-to-one onto C constants, with
/// `to_raw()` and `from_raw()`.
macro_rules! c_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:path,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The C value.
            pub fn to_raw(self) -> i32 {
                match self { $($name::$variant => $value as i32,)+ }
            }

            /// The variant of a C value, if it is one.
            pub fn from_raw(value: i32) -> Option<$name> {
                $(if value == $value as i32 { return Some($name::$variant); })+
                None
            }
        }
    };
}
