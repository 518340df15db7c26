//! What a use case can refuse, typed, so each edge maps it once: the HTTP API to a status and its
//! error body (`src/http/error.rs`), the CLI to a message.

use herald_domain::ports::PortError;
use herald_domain::{InvalidInput, ReceiverId, ReceiverKind, Status};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A value the caller gave is not acceptable (now): the field it names is at fault.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An include list names receivers that do not exist: their messages could never arrive.
    #[error("{} unknown {kind} ids, such as: {}", unknown.len(), sample(unknown))]
    UnknownReceivers { kind: ReceiverKind, unknown: Vec<ReceiverId> },
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    /// The notification's status does not allow this move.
    #[error("cannot {verb} a notification that is {}", current.as_str())]
    InvalidTransition { verb: &'static str, current: Status },
    /// A force-read message must be read before it may be archived.
    #[error("a force-read message cannot be archived while it is unread: read it first")]
    ForceReadUnread,
    #[error("at most {max} receivers per call; use `herald receivers import` for more")]
    BatchTooLarge { max: usize },
    /// A backend failed; the caller may try again.
    #[error(transparent)]
    Backend(#[from] PortError),
}

pub type AppResult<T> = Result<T, AppError>;

/// The first ten ids, enough to find the mistake without echoing a 10,000-id list.
fn sample(ids: &[ReceiverId]) -> String {
    ids.iter().take(10).map(ReceiverId::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These are the API's words (the `message` of its error body): they say what to change.
    #[test]
    fn refusals_say_what_to_change() {
        let unknown: Vec<ReceiverId> = (0..12).map(|i| ReceiverId::parse("", &format!("r{i}")).unwrap()).collect();
        assert_eq!(
            AppError::UnknownReceivers { kind: ReceiverKind::Rider, unknown }.to_string(),
            "12 unknown rider ids, such as: r0, r1, r2, r3, r4, r5, r6, r7, r8, r9"
        );
        let refused = AppError::InvalidTransition { verb: "revoke", current: Status::Draft };
        assert_eq!(refused.to_string(), "cannot revoke a notification that is draft");
        assert_eq!(AppError::NotFound("notification").to_string(), "notification not found");
        assert_eq!(
            AppError::ForceReadUnread.to_string(),
            "a force-read message cannot be archived while it is unread: read it first"
        );
        assert_eq!(
            AppError::BatchTooLarge { max: 10_000 }.to_string(),
            "at most 10000 receivers per call; use `herald receivers import` for more"
        );
    }
}
