//! How initiators authenticate to an iSCSI target, and the rules for CHAP
//! user names and secrets.

/// How initiators authenticate to an iSCSI target.
#[derive(Clone, PartialEq, Eq)]
pub enum IscsiAuth {
    /// Demo mode without authentication: any initiator that reaches the
    /// portal may log in.
    None,
    /// One-way CHAP: an initiator logs in with this user name and secret.
    Chap {
        /// The CHAP user name.
        user: String,
        /// The CHAP secret.
        password: String,
    },
}

impl std::fmt::Debug for IscsiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IscsiAuth::None => f.write_str("None"),
            IscsiAuth::Chap { user, .. } => f
                .debug_struct("Chap")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
        }
    }
}

/// CHAP user names and secrets: printable ASCII without spaces, at most
/// 255 bytes (LIO's limit), and not starting with "NULL" (which LIO takes
/// as "unset").
pub(super) fn check_chap_value(what: &str, value: &str, min_len: usize) -> Result<(), String> {
    if value.len() < min_len {
        return Err(if min_len == 1 {
            format!("the {what} is empty")
        } else {
            format!("the {what} is shorter than {min_len} characters")
        });
    }
    if value.len() > 255 {
        return Err(format!("the {what} is longer than 255 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the {what} may only hold printable ASCII characters without spaces"
        ));
    }
    if value.starts_with("NULL") {
        return Err(format!("the {what} must not start with \"NULL\""));
    }
    Ok(())
}
