//! The receiver directory's use cases: upserting a batch (the console's API) and importing a file
//! of any size (the CLI), both counting each receiver once however often it is named.

use std::collections::BTreeMap;

use herald_domain::{City, InvalidInput, Receiver, ReceiverId, ReceiverKind, ReceiverRef};

use crate::{AppError, AppResult, Herald};

/// Receivers per upsert call of the API; more go through `herald receivers import`.
pub const MAX_BATCH: usize = 10_000;
/// Receivers per upsert transaction of an import.
pub const IMPORT_BATCH: usize = 5_000;
/// Rejections an import keeps for its report; the rest are only counted.
const KEEP_REJECTED: usize = 100;

/// Receivers keyed by who they are: one named twice is upserted once, as its last entry says.
#[derive(Default)]
struct Distinct(BTreeMap<(ReceiverKind, ReceiverId), Receiver>);

impl Distinct {
    fn add(&mut self, receiver: Receiver) {
        self.0.insert((receiver.kind, receiver.id.clone()), receiver);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn take(&mut self) -> Vec<Receiver> {
        std::mem::take(&mut self.0).into_values().collect()
    }
}

impl Herald {
    /// Adds or updates at most `MAX_BATCH` receivers and says how many distinct ones it got. The
    /// batch comes unchecked (each item parsed or why not), so that an oversized one is refused
    /// before any of it is looked at; the first bad item refuses the whole batch.
    pub async fn upsert_receivers(
        &self,
        batch: impl ExactSizeIterator<Item = Result<Receiver, InvalidInput>>,
    ) -> AppResult<usize> {
        if batch.len() > MAX_BATCH {
            return Err(AppError::BatchTooLarge { max: MAX_BATCH });
        }
        let mut distinct = Distinct::default();
        for receiver in batch {
            distinct.add(receiver?);
        }
        let receivers = distinct.take();
        self.ports.receivers.upsert_receivers(&receivers).await?;
        Ok(receivers.len())
    }

    /// One receiver, as the directory holds it.
    pub async fn receiver(&self, who: &ReceiverRef) -> AppResult<Receiver> {
        let found = self.ports.console.receivers.lookup_receivers(who.kind, std::slice::from_ref(&who.id)).await?;
        found.into_iter().next().ok_or(AppError::NotFound("receiver"))
    }

    /// Up to `limit` receivers (of `kind`, in `city`, when given) after `after`, by kind and id, and
    /// whether more follow.
    pub async fn receivers(
        &self,
        kind: Option<ReceiverKind>,
        city: Option<&City>,
        after: Option<&ReceiverRef>,
        limit: usize,
    ) -> AppResult<(Vec<Receiver>, bool)> {
        // One row past the page says whether another page follows.
        let mut found = self.ports.console.receivers.list_receivers(kind, city, after, limit + 1).await?;
        let more = found.len() > limit;
        found.truncate(limit);
        Ok((found, more))
    }

    /// Deletes a receiver with its groups, read receipts and inbox. The truth goes first: once the
    /// receiver is gone from SQL no send pages it again, and if the inbox store then fails, deleting
    /// again finishes the job. Not found once nothing of it is left anywhere.
    pub async fn delete_receiver(&self, who: &ReceiverRef) -> AppResult<()> {
        let existed = self.ports.receivers.delete_receiver(who.kind, &who.id).await?;
        let erased = self.ports.inbox.erase_receiver(who).await?;
        if !existed && erased == 0 {
            return Err(AppError::NotFound("receiver"));
        }
        Ok(())
    }

    /// Starts an import: feed it receivers (and the rows that did not parse) in file order.
    pub fn import_receivers(&self) -> ReceiverImport<'_> {
        ReceiverImport { herald: self, pending: Distinct::default(), report: ImportReport::default() }
    }
}

/// A row that did not parse: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Receivers written: each counted once per transaction of `IMPORT_BATCH` that names it (the
    /// import keeps no memory of the millions before, so one named again much later counts again).
    pub imported: u64,
    /// The first rejections, in file order.
    pub rejected: Vec<Rejected>,
    /// Rejections beyond those kept in `rejected`.
    pub more_rejected: u64,
}

impl ImportReport {
    pub fn rejected_count(&self) -> u64 {
        self.rejected.len() as u64 + self.more_rejected
    }
}

/// An import under way: upserts `IMPORT_BATCH` distinct receivers per transaction, in bounded
/// memory however many the source holds. What [`ReceiverImport::finish`] has not flushed is not
/// written.
pub struct ReceiverImport<'a> {
    herald: &'a Herald,
    pending: Distinct,
    report: ImportReport,
}

impl ReceiverImport<'_> {
    /// Takes receivers, writing each batch as it fills.
    pub async fn add(&mut self, receivers: impl IntoIterator<Item = Receiver>) -> AppResult<()> {
        for receiver in receivers {
            self.pending.add(receiver);
            if self.pending.len() == IMPORT_BATCH {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Notes a row that did not parse; the others are imported all the same.
    pub fn reject(&mut self, rejected: Rejected) {
        if self.report.rejected.len() < KEEP_REJECTED {
            self.report.rejected.push(rejected);
        } else {
            self.report.more_rejected += 1;
        }
    }

    async fn flush(&mut self) -> AppResult<()> {
        let batch = self.pending.take();
        self.herald.ports.receivers.upsert_receivers(&batch).await?;
        self.report.imported += batch.len() as u64;
        Ok(())
    }

    /// Writes what is left and reports.
    pub async fn finish(mut self) -> AppResult<ImportReport> {
        if self.pending.len() > 0 {
            self.flush().await?;
        }
        Ok(self.report)
    }
}
