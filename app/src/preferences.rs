//! The apps' preferences: which categories a receiver opted out of.

use herald_domain::{Preferences, ReceiverRef};

use crate::{AppResult, Herald};

impl Herald {
    /// The categories `me` opted out of.
    pub async fn preferences(&self, me: &ReceiverRef) -> AppResult<Preferences> {
        Ok(self.ports.receivers.preferences(me).await?)
    }

    /// Replaces what `me` opted out of; a category opted back into brings its still-valid
    /// broadcasts late (`ReceiverDirectory::set_preferences`). Answers what is stored now.
    pub async fn set_preferences(&self, me: &ReceiverRef, prefs: Preferences) -> AppResult<Preferences> {
        self.ports.receivers.set_preferences(me, &prefs).await?;
        Ok(prefs)
    }
}
