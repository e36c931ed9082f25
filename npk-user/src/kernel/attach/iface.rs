//! Interface names as the kernel accepts them, checked before any path is built from one,
//! and the name <-> index lookups.

use std::{fmt, str::FromStr};

/// Interface names have at most IFNAMSIZ - 1 bytes.
pub const IFACE_NAME_MAX: usize = 15;

/// A network interface name as the kernel accepts one (`dev_valid_name`): 1-15 bytes, no `/`,
/// `:`, whitespace or NUL, not `.` or `..`. Checked before any path is built from it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IfaceName(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IfaceNameError {
    #[error("the interface name is empty")]
    Empty,
    #[error("interface name {name:?} has {len} bytes; the kernel allows at most {IFACE_NAME_MAX}")]
    TooLong { name: String, len: usize },
    #[error("interface name {name:?} contains {found:?}, which interface names cannot contain")]
    Forbidden { name: String, found: char },
    #[error("{0:?} is a directory name, not an interface name")]
    Dots(String),
}

impl FromStr for IfaceName {
    type Err = IfaceNameError;

    fn from_str(name: &str) -> Result<Self, IfaceNameError> {
        if name.is_empty() {
            return Err(IfaceNameError::Empty);
        }
        if name.len() > IFACE_NAME_MAX {
            return Err(IfaceNameError::TooLong {
                name: name.to_string(),
                len: name.len(),
            });
        }
        if name == "." || name == ".." {
            return Err(IfaceNameError::Dots(name.to_string()));
        }
        if let Some(found) = name
            .chars()
            .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
        {
            return Err(IfaceNameError::Forbidden {
                name: name.to_string(),
                found,
            });
        }
        Ok(Self(name.to_string()))
    }
}

impl IfaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The interface's index, or None when there is no such interface.
pub(super) fn ifindex(iface: &IfaceName) -> Option<u32> {
    let name = std::ffi::CString::new(iface.as_str()).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of interface `index` in this network namespace.
pub(super) fn ifname(index: u32) -> Option<IfaceName> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `name`.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: on success `name` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    name.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_as_the_kernel_does() {
        for good in [
            "eth0",
            "a",
            "veth-x.100",
            "123456789012345",
            "nd1a2b3h",
            ".x",
        ] {
            assert_eq!(good.parse::<IfaceName>().unwrap().as_str(), good);
        }
        assert_eq!("".parse::<IfaceName>(), Err(IfaceNameError::Empty));
        for dots in [".", ".."] {
            assert_eq!(
                dots.parse::<IfaceName>(),
                Err(IfaceNameError::Dots(dots.into()))
            );
        }
        assert!(matches!(
            "1234567890123456".parse::<IfaceName>(),
            Err(IfaceNameError::TooLong { len: 16, .. })
        ));
        for (bad, found) in [
            ("a/b", '/'),
            ("../npk", '/'),
            ("a b", ' '),
            ("a\tb", '\t'),
            ("a\nb", '\n'),
            ("a\0b", '\0'),
            ("eth0:1", ':'),
        ] {
            assert!(
                matches!(bad.parse::<IfaceName>(), Err(IfaceNameError::Forbidden { found: f, .. }) if f == found),
                "{bad:?}"
            );
        }
    }
}
