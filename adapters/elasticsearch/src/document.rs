//! The JSON the server holds and is asked: a notification as a document of the mapping
//! (`es-mappings/notifications-v1.json`), and a console filter as a query in the search's order.

use chrono::{DateTime, Utc};
use herald_domain::audience::Target;
use herald_domain::listing::{ListCursor, NotificationFilter};
use herald_domain::search::{SearchCursor, SearchDocument};
use serde_json::{Value, json};

/// The index's settings and mapping: every index Herald creates, the first and each rebuilt one.
pub const MAPPING: &str = include_str!("../../../es-mappings/notifications-v1.json");
/// The mapping's version, part of each index's name.
pub const MAPPING_VERSION: u32 = 1;

/// The `record` of a notification's document; the position's document has `APPLIED_ID`.
pub const NOTIFICATION: &str = "notification";
/// What a word found in the title adds to a hit's score, and one found in the body.
const TITLE_SCORE: f32 = 2.0;
const BODY_SCORE: f32 = 1.0;

/// `_id` and `record` of the document holding the change-log position applied. Its external version
/// is that position, so the server itself refuses to move it back.
pub const APPLIED_ID: &str = "applied";

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The document of one notification, its `_id` the notification's id.
pub fn source(doc: &SearchDocument) -> Value {
    let n = &doc.notification;
    let content = &n.content;
    let mut cities: Vec<&str> = content.audience.named_cities().map(|c| c.as_str()).collect();
    cities.extend(doc.cities_reached.iter().map(|c| c.as_str()));
    cities.sort_unstable();
    cities.dedup();
    let groups: Vec<&str> = match &content.audience.target {
        Target::Selection(selection) => selection.groups.iter().map(|g| g.as_str()).collect(),
        Target::Include(_) => Vec::new(),
    };
    let read_rate = if doc.sent == 0 { 0.0 } else { doc.read as f64 / doc.sent as f64 };
    json!({
        "record": NOTIFICATION,
        "id": n.id.as_str(),
        // Every text a reader may be shown: a translation or a variant is found as the default is.
        "title": content.texts().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        "body": content.texts().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
        "category": content.category.as_str(),
        "receiver_kind": content.receiver_kind.as_str(),
        "status": n.status.as_str(),
        "cities": cities,
        "cities_reached": doc.cities_reached.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "groups": groups,
        "direct": content.audience.is_direct(),
        "pinned": content.pinned,
        "force_read": content.force_read,
        "created_at": millis(n.created_at),
        "send_at": content.send_at.map(millis),
        "sent_at": n.sent_at.map(millis),
        "revoked_at": n.revoked_at.map(millis),
        "valid_from": content.validity.from().map(millis),
        "valid_until": content.validity.until().map(millis),
        "matched": doc.matched,
        "sent": doc.sent,
        "read": doc.read,
        "read_rate": read_rate,
    })
}

/// The document of the position applied.
pub fn applied_source(position: u64) -> Value {
    json!({ "record": APPLIED_ID, "applied": position })
}

/// The search body for up to `size` hits of `filter` after `after`: by score, newest, id when the
/// filter has text, else newest, id (descending each), with an exact total.
pub fn search_body(filter: &NotificationFilter, after: Option<&SearchCursor>, size: usize) -> Value {
    // Every word of the text (a Chinese word: its bigrams in a row) in the title or the body. Its
    // score is fixed per field (title 2, body 1, summed over the words), never BM25: relevance then
    // depends on the document alone, not on what else the index holds (or held, before a merge), so
    // a cursor's score stays exact while other documents are re-indexed.
    let must: Vec<Value> = filter
        .text
        .iter()
        .flat_map(|text| text.split_whitespace())
        .map(|word| {
            let in_field = |field: &str, boost: f32| {
                json!({ "constant_score": { "filter": { "match_phrase": { field: word } }, "boost": boost } })
            };
            json!({ "bool": { "should": [in_field("title", TITLE_SCORE), in_field("body", BODY_SCORE)], "minimum_should_match": 1 } })
        })
        .collect();
    let mut must_filter = vec![json!({ "term": { "record": NOTIFICATION } })];
    if let Some(city) = &filter.city {
        must_filter.push(json!({ "term": { "cities": city.as_str() } }));
    }
    if let Some(status) = filter.status {
        must_filter.push(json!({ "term": { "status": status.as_str() } }));
    }
    if let Some(category) = filter.category {
        must_filter.push(json!({ "term": { "category": category.as_str() } }));
    }
    if let Some(kind) = filter.receiver_kind {
        must_filter.push(json!({ "term": { "receiver_kind": kind.as_str() } }));
    }
    if filter.from.is_some() || filter.to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = filter.from {
            range.insert("gte".into(), millis(from).into());
        }
        if let Some(to) = filter.to {
            range.insert("lt".into(), millis(to).into());
        }
        must_filter.push(json!({ "range": { "created_at": range } }));
    }
    let ranked = filter.text.is_some();
    let mut sort = Vec::new();
    if ranked {
        sort.push(json!({ "_score": "desc" }));
    }
    sort.push(json!({ "created_at": "desc" }));
    sort.push(json!({ "id": "desc" }));
    let mut body = json!({
        "query": { "bool": { "must": must, "filter": must_filter } },
        "sort": sort,
        "size": size,
        "track_total_hits": true,
        "_source": false,
    });
    // A cursor without a score has no place in the ranked order: the ranked list starts over.
    let place = after.and_then(|after| match (ranked, after.score) {
        (true, Some(score)) => Some(vec![json!(score), json!(after.last.created_ms), json!(after.last.id.as_str())]),
        (true, None) => None,
        (false, _) => Some(vec![json!(after.last.created_ms), json!(after.last.id.as_str())]),
    });
    if let Some(place) = place {
        body["search_after"] = Value::Array(place);
    }
    body
}

/// The cursor of a hit, from its `sort` values in `search_body`'s order.
pub fn cursor(ranked: bool, sort: &[Value]) -> Option<SearchCursor> {
    let (score, rest) = if ranked {
        let (score, rest) = sort.split_first()?;
        (Some(score.as_f64()? as f32), rest)
    } else {
        (None, sort)
    };
    let [created, id] = rest else { return None };
    let id = herald_domain::notification::NotificationId::parse("id", id.as_str()?).ok()?;
    Some(SearchCursor { score, last: ListCursor { created_ms: created.as_i64()?, id } })
}
