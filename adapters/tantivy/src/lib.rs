//! The embedded admin search: every notification in a tantivy index under the data directory
//! (`search/`). The directory holds one generation of the index in use, named by the `CURRENT` file,
//! and while a rebuild runs, the next generation beside it; `finish` commits the new one, points
//! `CURRENT` at it (written aside, then renamed) and removes the old one. The change-log position
//! applied is the commit's payload, so documents and position are durable together. An index that
//! is missing, does not open, fails its checksums or has another schema opens as a fresh empty one
//! (applied 0), which the feeder then rebuilds from SQL.
//!
//! One process at a time writes the index: the first to write (the feed, a rebuild) takes an
//! exclusive lock on the `LOCK` file, which names it, and holds it while the index is open. Any
//! other process may open it to search (following the writer's commits), and its writes fail,
//! naming the writer: a second api process's feed waits its turn, `herald reindex` beside a
//! running api refuses.
//!
//! Relevance is a sum of constants, never corpus statistics: each query word found in the title
//! counts 2 and in the body 1, so a document's score depends on the query and itself only and a
//! cursor holds while the mirror changes (see `SearchIndex::search`); ties go to the newest.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_domain::NotificationId;
use herald_domain::listing::{ListCursor, NotificationFilter};
use herald_domain::ports::{PortError, PortResult};
use herald_domain::search::{SearchCursor, SearchDocument, SearchHits, SearchIndex, SearchRebuild};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

mod collect;
mod config;
mod text;

pub use config::TantivyConfig;

use collect::{Key, Page};
use text::{HeraldTokenizer, TOKENIZER, Word};

const BACKEND: &str = "tantivy search";
/// The file naming the generation in use.
const CURRENT: &str = "CURRENT";
/// The file whose exclusive lock the one process writing the index holds.
const LOCK: &str = "LOCK";
/// Indexing memory of the live index's writer (fed in small batches) and of a rebuild's (bulk).
const LIVE_WRITER_HEAP: usize = 30_000_000;
const REBUILD_WRITER_HEAP: usize = 200_000_000;
/// Score of a query word found in the title, and in the body.
const IN_TITLE: f32 = 2.0;
const IN_BODY: f32 = 1.0;

fn err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PortError {
    PortError::new(BACKEND, e)
}

/// The field names, read by the collector too.
mod fields {
    pub const ID: &str = "id";
    pub const ID_HI: &str = "id_hi";
    pub const ID_LO: &str = "id_lo";
    pub const TITLE: &str = "title";
    pub const BODY: &str = "body";
    pub const CITIES: &str = "cities";
    pub const STATUS: &str = "status";
    pub const CATEGORY: &str = "category";
    pub const RECEIVER_KIND: &str = "receiver_kind";
    pub const CREATED: &str = "created";
}

/// The schema's fields. Nothing is stored: a hit's id and sort keys come from fast fields.
#[derive(Clone, Copy)]
struct Fields {
    /// The notification id, whole, to replace a document by it.
    id: Field,
    /// The id's 128 bits, for the order's last key and to name a hit.
    id_hi: Field,
    id_lo: Field,
    title: Field,
    body: Field,
    /// The cities the audience names and those its sends reached.
    cities: Field,
    status: Field,
    category: Field,
    receiver_kind: Field,
    created: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions)
            .set_fieldnorms(false),
    );
    let fast = NumericOptions::default().set_fast();
    let fields = Fields {
        id: b.add_text_field(fields::ID, STRING),
        id_hi: b.add_u64_field(fields::ID_HI, fast.clone()),
        id_lo: b.add_u64_field(fields::ID_LO, fast.clone()),
        title: b.add_text_field(fields::TITLE, words.clone()),
        body: b.add_text_field(fields::BODY, words),
        cities: b.add_text_field(fields::CITIES, STRING),
        status: b.add_text_field(fields::STATUS, STRING),
        category: b.add_text_field(fields::CATEGORY, STRING),
        receiver_kind: b.add_text_field(fields::RECEIVER_KIND, STRING),
        created: b.add_i64_field(fields::CREATED, fast.set_indexed()),
    };
    (b.build(), fields)
}

fn id_bits(id: &NotificationId) -> u128 {
    // A NotificationId is 32 hex digits by construction.
    u128::from_str_radix(id.as_str(), 16).unwrap_or(0)
}

fn id_of(bits: u128) -> PortResult<NotificationId> {
    NotificationId::parse("id", &format!("{bits:032x}")).map_err(|e| err(format!("an indexed id: {e}")))
}

impl Fields {
    fn id_term(&self, id: &NotificationId) -> Term {
        Term::from_field_text(self.id, id.as_str())
    }

    fn document(&self, d: &SearchDocument) -> TantivyDocument {
        let n = &d.notification;
        let bits = id_bits(&n.id);
        let mut doc = TantivyDocument::default();
        doc.add_text(self.id, n.id.as_str());
        doc.add_u64(self.id_hi, (bits >> 64) as u64);
        doc.add_u64(self.id_lo, bits as u64);
        // Every text a reader may be shown: a translation or a variant is found as the default is.
        for (title, body) in n.content.texts() {
            doc.add_text(self.title, title.as_str());
            doc.add_text(self.body, body.as_str());
        }
        let cities: BTreeSet<&str> =
            n.content.audience.named_cities().chain(&d.cities_reached).map(|c| c.as_str()).collect();
        for city in cities {
            doc.add_text(self.cities, city);
        }
        doc.add_text(self.status, n.status.as_str());
        doc.add_text(self.category, n.content.category.as_str());
        doc.add_text(self.receiver_kind, n.content.receiver_kind.as_str());
        doc.add_i64(self.created, n.created_at.timestamp_millis());
        doc
    }

    /// A query word in `field`: a plain word or one CJK character is a term; CJK characters
    /// together are the phrase of their pairs.
    fn word(&self, field: Field, word: &Word) -> Box<dyn Query> {
        let term = |t: &str| Term::from_field_text(field, t);
        match word {
            Word::Plain(w) => Box::new(TermQuery::new(term(w), IndexRecordOption::Basic)),
            Word::Cjk(chars) if chars.len() == 1 => {
                Box::new(TermQuery::new(term(&chars[0].to_string()), IndexRecordOption::Basic))
            }
            Word::Cjk(chars) => {
                let pairs: Vec<Term> = text::pairs(chars).map(|p| term(&p)).collect();
                match pairs.as_slice() {
                    [one] => Box::new(TermQuery::new(one.clone(), IndexRecordOption::Basic)),
                    _ => Box::new(PhraseQuery::new(pairs)),
                }
            }
        }
    }

    /// Every word of `text` in the title or the body, scored by where it was found.
    fn text(&self, text: &str) -> Box<dyn Query> {
        let words = text::words(text);
        if words.is_empty() {
            return Box::new(EmptyQuery);
        }
        let each: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|(_, w)| {
                let either: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
                    (Occur::Should, Box::new(ConstScoreQuery::new(self.word(self.title, w), IN_TITLE))),
                    (Occur::Should, Box::new(ConstScoreQuery::new(self.word(self.body, w), IN_BODY))),
                ]));
                (Occur::Must, either)
            })
            .collect();
        Box::new(BooleanQuery::new(each))
    }

    fn query(&self, filter: &NotificationFilter) -> Box<dyn Query> {
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(text) = &filter.text {
            must.push((Occur::Must, self.text(text)));
        }
        // Filters add nothing to the score.
        let mut only = |q: Box<dyn Query>| must.push((Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0))));
        let term = |field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
        };
        if let Some(city) = &filter.city {
            only(term(self.cities, city.as_str()));
        }
        if let Some(status) = filter.status {
            only(term(self.status, status.as_str()));
        }
        if let Some(category) = filter.category {
            only(term(self.category, category.as_str()));
        }
        if let Some(kind) = filter.receiver_kind {
            only(term(self.receiver_kind, kind.as_str()));
        }
        if filter.from.is_some() || filter.to.is_some() {
            let at = |ms: i64| Term::from_field_i64(self.created, ms);
            let from = filter.from.map_or(Bound::Unbounded, |t| Bound::Included(at(t.timestamp_millis())));
            let to = filter.to.map_or(Bound::Unbounded, |t| Bound::Excluded(at(t.timestamp_millis())));
            only(Box::new(RangeQuery::new(from, to)));
        }
        if must.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(must)) }
    }
}

/// One generation of the index: a directory under the root.
struct Generation {
    name: String,
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    /// Opened at the first write, so a process that only searches holds no writer lock.
    writer: Mutex<Option<IndexWriter>>,
}

impl Generation {
    fn with_reader(name: String, dir: PathBuf, index: Index) -> tantivy::Result<Self> {
        index.tokenizers().register(TOKENIZER, TextAnalyzer::from(HeraldTokenizer));
        let reader = index.reader_builder().reload_policy(ReloadPolicy::OnCommitWithDelay).try_into()?;
        Ok(Self { name, dir, index, reader, writer: Mutex::new(None) })
    }

    fn create(root: &Path, name: String) -> tantivy::Result<Self> {
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)?;
        let index = Index::create_in_dir(&dir, schema().0)?;
        Self::with_reader(name, dir, index)
    }

    /// The generation `name`, if it opens whole: our schema, every checksum right, a readable
    /// position.
    fn open(root: &Path, name: &str) -> Result<Self, String> {
        let dir = root.join(name);
        let index = Index::open_in_dir(&dir).map_err(|e| e.to_string())?;
        if index.schema() != schema().0 {
            return Err("its schema is not this version's".into());
        }
        let corrupt = index.validate_checksum().map_err(|e| e.to_string())?;
        if !corrupt.is_empty() {
            return Err(format!("files fail their checksum: {corrupt:?}"));
        }
        let generation = Self::with_reader(name.to_string(), dir, index).map_err(|e| e.to_string())?;
        generation.applied().map_err(|e| e.to_string())?;
        Ok(generation)
    }

    fn applied(&self) -> PortResult<u64> {
        let payload = self.index.load_metas().map_err(err)?.payload;
        payload.map_or(Ok(0), |p| p.parse().map_err(|_| err(format!("the applied position {p:?} is not a number"))))
    }

    fn writer(&self, heap: usize) -> PortResult<std::sync::MutexGuard<'_, Option<IndexWriter>>> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if writer.is_none() {
            *writer = Some(self.index.writer_with_num_threads(1, heap).map_err(err)?);
        }
        Ok(writer)
    }

    /// Queues `documents`, each replacing its notification's (in order, so the later of two wins).
    fn add(writer: &IndexWriter, documents: Vec<(Term, TantivyDocument)>) -> PortResult<()> {
        for (id, doc) in documents {
            writer.delete_term(id);
            writer.add_document(doc).map_err(err)?;
        }
        Ok(())
    }

    /// Commits what was queued with `position` as applied, and makes it searched.
    fn commit(&self, writer: &mut IndexWriter, position: u64) -> PortResult<()> {
        let mut commit = writer.prepare_commit().map_err(err)?;
        commit.set_payload(&position.to_string());
        commit.commit().map_err(err)?;
        self.reader.reload().map_err(err)
    }

    /// Stops writing and deletes the generation's files (searches still reading them keep their
    /// open files until they end).
    fn remove(&self) {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(writer) = writer
            && let Err(e) = writer.wait_merging_threads()
        {
            tracing::warn!(error = %e, "search index: stopping a writer");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "search index: removing an old generation");
        }
    }
}

/// A name no generation had: the clock's nanoseconds.
fn new_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("g{nanos}")
}

/// Points `CURRENT` at `name`: written aside and renamed over it, so it names one or the other.
fn point_at(root: &Path, name: &str) -> std::io::Result<()> {
    let aside = root.join(format!("{CURRENT}.new"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&aside)?;
        f.write_all(name.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&aside, root.join(CURRENT))?;
    std::fs::File::open(root)?.sync_all()
}

struct Shared {
    root: PathBuf,
    fields: Fields,
    live: RwLock<Arc<Generation>>,
    /// The writer's lock, once this process writes the index.
    owner: Mutex<Option<std::fs::File>>,
}

impl Shared {
    fn live(&self) -> Arc<Generation> {
        self.live.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Makes this process the index's one writer, unless it is already: takes the writer's lock
    /// (held as long as the index is open), follows `CURRENT` if a writer before it moved it
    /// since this process opened the index, and removes every other generation (what a writer
    /// before it left unfinished). Another process writing it: an error naming it.
    fn own(&self) -> PortResult<()> {
        let mut owner = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        if owner.is_some() {
            return Ok(());
        }
        let file = lock(&self.root)?;
        self.follow_current()?;
        remove_leftovers(&self.root, &self.live().name)?;
        *owner = Some(file);
        Ok(())
    }

    /// In a process that does not write the index, searches the generation the writer made
    /// current (a rebuild moves `CURRENT`; the writer's commits are followed by the reader). One
    /// that does not open yet (the writer replaced it again meanwhile) leaves the searched one.
    fn follow(&self) {
        if self.owner.lock().unwrap_or_else(PoisonError::into_inner).is_some() {
            return;
        }
        if let Err(e) = self.follow_current() {
            tracing::warn!(error = %e, "search index: the writer's current generation does not open yet");
        }
    }

    fn follow_current(&self) -> PortResult<()> {
        let live = self.live();
        if let Some(name) = named(&self.root).filter(|name| *name != live.name) {
            let moved = Generation::open(&self.root, &name).map_err(err)?;
            *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(moved);
        }
        Ok(())
    }
}

/// The embedded `SearchIndex`.
pub struct TantivySearch {
    shared: Arc<Shared>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> PortResult<T> + Send + 'static) -> PortResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(err)?
}

impl TantivySearch {
    /// Opens the index in `config.dir` to search it; a process becomes its one writer at its
    /// first write (`Shared::own`). An index that is missing or unusable opens as a fresh empty
    /// one (applied 0), made under the writer's lock (or, if another process holds it, the one
    /// that process made current; failing that, the error names it).
    pub async fn open(config: &TantivyConfig) -> PortResult<Self> {
        let root = config.dir.clone();
        blocking(move || {
            std::fs::create_dir_all(&root).map_err(err)?;
            let live = match named(&root).map(|name| Generation::open(&root, &name)) {
                Some(Ok(generation)) => generation,
                failed => {
                    if let Some(Err(why)) = failed {
                        tracing::warn!(
                            dir = %root.display(), %why,
                            "search index unusable: starting an empty one, to be rebuilt from SQL"
                        );
                    }
                    fresh_or_the_writers(&root)?
                }
            };
            let fields = schema().1;
            let shared = Shared { root, fields, live: RwLock::new(Arc::new(live)), owner: Mutex::new(None) };
            Ok(Self { shared: Arc::new(shared) })
        })
        .await
    }
}

/// A fresh empty generation made current, under the writer's lock (let go once made: the writer
/// is whoever writes first); or, if a writer holds the lock, the generation it made current.
fn fresh_or_the_writers(root: &Path) -> PortResult<Generation> {
    match lock(root) {
        Ok(_held_until_made) => {
            let fresh = Generation::create(root, new_name()).map_err(err)?;
            point_at(root, &fresh.name).map_err(err)?;
            remove_leftovers(root, &fresh.name)?;
            Ok(fresh)
        }
        Err(held) => named(root).and_then(|name| Generation::open(root, &name).ok()).ok_or(held),
    }
}

/// The generation `CURRENT` names, if it names one.
fn named(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(CURRENT)).ok().map(|s| s.trim().to_string())
}

/// Takes the writer's lock of the index in `root` (an exclusive lock on its `LOCK` file, which
/// names the holder), or says which process holds it.
fn lock(root: &Path) -> PortResult<std::fs::File> {
    use fs4::fs_std::FileExt as _;
    use std::io::Write as _;
    let path = root.join(LOCK);
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(err)?;
    if !file.try_lock_exclusive().map_err(err)? {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        return Err(err(format!(
            "the search index in {} is written by another Herald process ({}): one process at a time writes an \
             embedded index (the api role's feed does); stop that process first",
            root.display(),
            if holder.is_empty() { "unknown" } else { holder }
        )));
    }
    file.set_len(0).map_err(err)?;
    file.write_all(format!("pid {}", std::process::id()).as_bytes()).map_err(err)?;
    Ok(file)
}

/// Removes every generation in `root` but `live`: an unfinished rebuild, an old generation.
fn remove_leftovers(root: &Path, live: &str) -> PortResult<()> {
    for entry in std::fs::read_dir(root).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_type().map_err(err)?.is_dir()
            && entry.file_name() != live
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(error = %e, dir = %entry.path().display(), "search index: removing a leftover");
        }
    }
    Ok(())
}

fn prepared(fields: &Fields, documents: &[SearchDocument]) -> Vec<(Term, TantivyDocument)> {
    documents.iter().map(|d| (fields.id_term(&d.notification.id), fields.document(d))).collect()
}

#[async_trait]
impl SearchIndex for TantivySearch {
    async fn index(&self, position: u64, documents: &[SearchDocument]) -> PortResult<()> {
        let shared = self.shared.clone();
        let documents = prepared(&shared.fields, documents);
        blocking(move || {
            shared.own()?;
            // Held while writing, so a rebuild's `finish` never swaps generations mid-batch.
            let live = shared.live.read().unwrap_or_else(PoisonError::into_inner);
            let mut writer = live.writer(LIVE_WRITER_HEAP)?;
            let writer = writer.as_mut().expect("opened above");
            if position <= live.applied()? {
                return Ok(());
            }
            let written = Generation::add(writer, documents).and_then(|()| live.commit(writer, position));
            if written.is_err() {
                // Nothing of a failed batch may ride along with the next one's commit.
                writer.rollback().map_err(err)?;
            }
            written
        })
        .await
    }

    async fn applied(&self) -> PortResult<u64> {
        let shared = self.shared.clone();
        blocking(move || {
            shared.follow();
            shared.live().applied()
        })
        .await
    }

    async fn search(
        &self,
        filter: &NotificationFilter,
        after: Option<&SearchCursor>,
        limit: usize,
    ) -> PortResult<SearchHits> {
        let shared = self.shared.clone();
        let query = shared.fields.query(filter);
        let ranked = filter.text.is_some();
        // An unranked cursor given to a ranked search (the text changed) starts from the top.
        let after = after.map(|c| Key {
            score: if ranked { c.score.unwrap_or(f32::INFINITY) } else { 0.0 },
            created_ms: c.last.created_ms,
            id: id_bits(&c.last.id),
        });
        let within = (filter.from.map(|t| t.timestamp_millis()), filter.to.map(|t| t.timestamp_millis()));
        let found = blocking(move || {
            shared.follow();
            let searcher = shared.live().reader.searcher();
            let page = Page { ranked, after, limit };
            collect::page(&searcher, shared.fields.created, &*query, &page, within).map_err(err)
        })
        .await?;
        let ids = found.keys.iter().take(limit).map(|k| id_of(k.id)).collect::<PortResult<Vec<_>>>()?;
        let next = match (found.keys.len() > limit, limit.checked_sub(1).and_then(|i| found.keys.get(i))) {
            (true, Some(last)) => Some(SearchCursor {
                score: ranked.then_some(last.score),
                last: ListCursor { created_ms: last.created_ms, id: id_of(last.id)? },
            }),
            _ => None,
        };
        Ok(SearchHits { ids, total: found.total, next })
    }

    async fn begin_rebuild(&self) -> PortResult<Box<dyn SearchRebuild>> {
        let shared = self.shared.clone();
        blocking(move || {
            shared.own()?;
            let generation = Generation::create(&shared.root, new_name()).map_err(err)?;
            let writer = generation.index.writer_with_num_threads(2, REBUILD_WRITER_HEAP).map_err(err)?;
            *generation.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(writer);
            Ok(Box::new(TantivyRebuild { shared, generation: Some(Arc::new(generation)) }) as Box<dyn SearchRebuild>)
        })
        .await
    }

    async fn ping(&self) -> PortResult<()> {
        let live = self.shared.live();
        blocking(move || {
            std::fs::metadata(&live.dir).map_err(err)?;
            live.reader.searcher();
            Ok(())
        })
        .await
    }
}

/// A generation being built beside the one in use; dropped unfinished, it is removed.
struct TantivyRebuild {
    shared: Arc<Shared>,
    generation: Option<Arc<Generation>>,
}

#[async_trait]
impl SearchRebuild for TantivyRebuild {
    async fn add(&mut self, documents: &[SearchDocument]) -> PortResult<()> {
        let documents = prepared(&self.shared.fields, documents);
        let generation = self.generation.clone().expect("a rebuild is unfinished until finish consumes it");
        blocking(move || {
            let writer = generation.writer.lock().unwrap_or_else(PoisonError::into_inner);
            Generation::add(writer.as_ref().expect("opened by begin_rebuild"), documents)
        })
        .await
    }

    async fn finish(mut self: Box<Self>, position: u64) -> PortResult<()> {
        let generation = self.generation.take().expect("finish is called once");
        let shared = self.shared.clone();
        blocking(move || {
            {
                let mut writer = generation.writer.lock().unwrap_or_else(PoisonError::into_inner);
                generation.commit(writer.as_mut().expect("opened by begin_rebuild"), position)?;
            }
            let old = {
                let mut live = shared.live.write().unwrap_or_else(PoisonError::into_inner);
                point_at(&shared.root, &generation.name).map_err(err)?;
                std::mem::replace(&mut *live, generation)
            };
            old.remove();
            Ok(())
        })
        .await
    }
}

impl Drop for TantivyRebuild {
    fn drop(&mut self) {
        if let Some(generation) = self.generation.take() {
            generation.remove();
        }
    }
}
