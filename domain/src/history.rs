//! What a notification's history records: typed events, rendered to the text the console shows in
//! this one place. Stores keep the rendered text with the status and time (`HistoryEntry`).

use std::fmt;

use chrono::{DateTime, Utc};

use crate::notification::NewNotification;
use crate::ports::CityPlan;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEvent {
    /// Created as a draft: nothing is sent until it is released.
    CreatedAsDraft,
    /// Created to send at a later time.
    ScheduledFor(DateTime<Utc>),
    /// Created to send as soon as the scheduler picks it up.
    ScheduledNow,
    /// A draft was released to be sent.
    Released,
    Cancelled,
    Revoked,
    /// Sending began with this plan.
    SendingStarted {
        receivers: u64,
        cities: usize,
    },
    /// Every city is done: the receivers its pages reached, in all.
    Delivered {
        receivers: u64,
    },
    /// A step of the send failed and will be retried (the first failure of a streak).
    Retrying {
        step: String,
        error: String,
    },
    /// A page can never be delivered (its body does not decode); it is kept as a dead letter.
    PageDeadLettered {
        key: String,
        reason: String,
    },
}

impl HistoryEvent {
    /// The first entry of a notification created at `now`.
    pub fn created(content: &NewNotification, now: DateTime<Utc>) -> Self {
        match (content.draft, content.send_at) {
            (true, _) => Self::CreatedAsDraft,
            (false, Some(at)) if at > now => Self::ScheduledFor(at),
            (false, _) => Self::ScheduledNow,
        }
    }

    /// Sending began with `plan`.
    pub fn sending(plan: &[CityPlan]) -> Self {
        Self::SendingStarted { receivers: plan.iter().map(|p| p.matched).sum(), cities: plan.len() }
    }
}

impl fmt::Display for HistoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreatedAsDraft => f.write_str("created as draft"),
            Self::ScheduledFor(at) => write!(f, "scheduled for {}", at.to_rfc3339()),
            Self::ScheduledNow => f.write_str("scheduled to send now"),
            Self::Released => f.write_str("released from draft"),
            Self::Cancelled => f.write_str("cancelled before sending"),
            Self::Revoked => f.write_str("revoked: removed from every inbox"),
            Self::SendingStarted { receivers, cities } => {
                write!(f, "sending to {receivers} receivers in {cities} cities")
            }
            Self::Delivered { receivers } => write!(f, "delivered to {receivers} receivers"),
            Self::Retrying { step, error } => write!(f, "{step} failed, will retry: {error}"),
            Self::PageDeadLettered { key, reason } => {
                write!(f, "page {key} can never be delivered ({reason}); kept as a dead-letter")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Audience, Body, Category, City, ReceiverKind, Title, ValidityWindow};

    fn content(draft: bool, send_at: Option<DateTime<Utc>>) -> NewNotification {
        NewNotification {
            title: Title::parse("title", "t").unwrap(),
            body: Body::parse("body", "b").unwrap(),
            category: Category::System,
            receiver_kind: ReceiverKind::Rider,
            audience: serde_json::from_str::<Audience>(r#"{"all": true}"#).unwrap(),
            pinned: false,
            force_read: false,
            validity: ValidityWindow::new(None, None).unwrap(),
            send_at,
            draft,
            image: None,
            actions: Default::default(),
            locales: Default::default(),
            variants: Default::default(),
        }
    }

    #[test]
    fn creation_says_when_it_will_send() {
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        assert_eq!(HistoryEvent::created(&content(true, Some(later)), now), HistoryEvent::CreatedAsDraft);
        assert_eq!(HistoryEvent::created(&content(false, Some(later)), now), HistoryEvent::ScheduledFor(later));
        assert_eq!(HistoryEvent::created(&content(false, Some(now)), now), HistoryEvent::ScheduledNow);
        assert_eq!(HistoryEvent::created(&content(false, None), now), HistoryEvent::ScheduledNow);
        assert_eq!(HistoryEvent::ScheduledFor(later).to_string(), format!("scheduled for {}", later.to_rfc3339()));
    }

    #[test]
    fn sending_counts_the_plan() {
        let plan = |city: &str, matched| CityPlan {
            city: City::parse("city", city).unwrap(),
            matched,
            members: None,
            opted_out: 0,
        };
        let event = HistoryEvent::sending(&[plan("bj", 3), plan("sh", 4)]);
        assert_eq!(event.to_string(), "sending to 7 receivers in 2 cities");
    }
}
