//! `herald receivers import FILE`: streams a CSV of `kind,id,city,groups[,attributes[,locale]]` (attributes a
//! JSON object of strings, `"{""name"": ""小王""}"` in CSV quoting; locale a language tag, `zh-CN`) into the import use case
//! (`herald_app::ReceiverImport`, which batches and counts), in bounded memory, however many
//! millions of rows the file holds. Parsing the CSV is this edge's part.

use std::path::Path;

use anyhow::Context as _;
use herald_app::{Herald, ImportReport, Rejected};
use herald_domain::{Attributes, Locale, Receiver};
use tokio::sync::mpsc;

/// Rows the reader hands over at a time (the import batches its transactions itself).
const CHUNK: usize = 1_000;

enum Chunk {
    Rows(Vec<Receiver>, u64),
    Bad(Rejected),
}

/// Reads `path` on a blocking thread and feeds the rows to the import use case as they come.
/// `progress` gets the bytes read so far. A header line (`kind,id,city,groups[,attributes[,locale]]`) is skipped; bad
/// rows are reported, not fatal.
pub async fn import_csv(path: &Path, herald: &Herald, progress: impl Fn(u64)) -> anyhow::Result<ImportReport> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    import_from(file, herald, progress).await
}

/// The same from any reader (a file, an uploaded body). A CSV that cannot be read at all (not
/// UTF-8) fails with a `csv::Error` in the chain; a store that fails, with its `AppError`.
pub async fn import_from(
    source: impl std::io::Read + Send + 'static,
    herald: &Herald,
    progress: impl Fn(u64),
) -> anyhow::Result<ImportReport> {
    let (tx, mut rx) = mpsc::channel::<anyhow::Result<Chunk>>(4);
    let reader = tokio::task::spawn_blocking(move || read_rows(source, &tx));
    let mut import = herald.import_receivers();
    while let Some(chunk) = rx.recv().await {
        match chunk? {
            Chunk::Rows(rows, bytes) => {
                import.add(rows).await.context("writing receivers")?;
                progress(bytes);
            }
            Chunk::Bad(r) => import.reject(r),
        }
    }
    reader.await.context("the CSV reader panicked")?;
    import.finish().await.context("writing receivers")
}

fn read_rows(source: impl std::io::Read, tx: &mpsc::Sender<anyhow::Result<Chunk>>) {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, source));
    let mut batch = Vec::with_capacity(CHUNK);
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(anyhow::Error::new(e).context("reading the CSV")));
                return;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if line == 1 && record.get(0) == Some("kind") {
            continue;
        }
        let field = |i| record.get(i).unwrap_or("");
        match record.len() {
            3..=6 => match Receiver::parse_fields(field(0), field(1), field(2), field(3)).and_then(|r| {
                let locale =
                    Some(field(5)).filter(|l| !l.is_empty()).map(|l| Locale::parse("locale", l)).transpose()?;
                Ok(r.with_attributes(Attributes::parse_json("attributes", field(4))?).with_locale(locale))
            }) {
                Ok(r) => batch.push(r),
                Err(e) => {
                    if tx.blocking_send(Ok(Chunk::Bad(Rejected { line, reason: e.to_string() }))).is_err() {
                        return;
                    }
                }
            },
            n => {
                let reason = format!("expected 4 to 6 columns kind,id,city,groups[,attributes[,locale]]; found {n}");
                if tx.blocking_send(Ok(Chunk::Bad(Rejected { line, reason }))).is_err() {
                    return;
                }
            }
        }
        if batch.len() == CHUNK {
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(CHUNK));
            if tx.blocking_send(Ok(Chunk::Rows(rows, csv.position().byte()))).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(Chunk::Rows(batch, csv.position().byte())));
    }
}
